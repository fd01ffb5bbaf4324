-- V3: indexes for the rules' lookups by ServiceEntry host as written (IST0177) and by selector.
CREATE INDEX provider_raw ON provider (raw);
CREATE INDEX gw_server_port ON gw_server (port);
