{{/* The name every object of the release carries. */}}
{{- define "iio.fullname" -}}
{{- if contains "istio-integrity-operator" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-istio-integrity-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "iio.serviceAccountName" -}}
{{- default (include "iio.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "iio.selectorLabels" -}}
app.kubernetes.io/name: istio-integrity-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iio.labels" -}}
{{ include "iio.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
