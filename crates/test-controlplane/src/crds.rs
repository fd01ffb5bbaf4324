//! Loading CustomResourceDefinitions from YAML files and installing them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

/// Why a CRD file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CrdFileError {
    /// The file cannot be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{path} is not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    /// A document of kind CustomResourceDefinition does not have the CRD's shape.
    #[error("document {index} of {path} is not a valid CustomResourceDefinition")]
    Shape {
        path: PathBuf,
        index: usize,
        source: serde_json::Error,
    },
}

/// Every CustomResourceDefinition in a (multi-document) YAML file; other kinds are skipped.
pub fn load_crds(path: &Path) -> Result<Vec<CustomResourceDefinition>, CrdFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| CrdFileError::Read {
        path: path.into(),
        source,
    })?;
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).map_err(|error| CrdFileError::Yaml {
            path: path.into(),
            message: error.to_string(),
        })?;
    documents
        .into_iter()
        .enumerate()
        .filter(|(_, document)| {
            document.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition")
        })
        .map(|(index, document)| {
            serde_json::from_value(document).map_err(|source| CrdFileError::Shape {
                path: path.into(),
                index,
                source,
            })
        })
        .collect()
}

/// Every `*.yaml` file of a directory, sorted so that installs are reproducible.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, CrdFileError> {
    let read_error = |source| CrdFileError::Read {
        path: dir.into(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Server-side applies the CRDs, then waits until the apiserver serves every one of them.
pub(crate) async fn install(
    client: kube::Client,
    crds: &[CustomResourceDefinition],
    timeout: Duration,
) -> Result<(), InstallError> {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let params = PatchParams::apply("test-controlplane").force();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .map_err(|source| InstallError::Apply { name, source })?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let listed = api
            .list(&ListParams::default())
            .await
            .map_err(InstallError::List)?;
        let pending: Vec<String> = crds
            .iter()
            .filter_map(|wanted| wanted.metadata.name.as_deref())
            .filter(|name| {
                !listed
                    .items
                    .iter()
                    .any(|crd| crd.metadata.name.as_deref() == Some(*name) && established(crd))
            })
            .map(str::to_string)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(InstallError::NotEstablished { pending, timeout });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Why installing CRDs failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The apiserver refused a CRD (e.g. an invalid schema or a CEL rule over the cost budget).
    #[error("the apiserver refused CRD {name}")]
    Apply { name: String, source: kube::Error },
    /// Listing CRDs failed.
    #[error("listing CRDs")]
    List(#[source] kube::Error),
    /// Some CRDs never became Established.
    #[error("CRDs not Established after {timeout:?}: {pending:?}")]
    NotEstablished {
        pending: Vec<String>,
        timeout: Duration,
    },
}
