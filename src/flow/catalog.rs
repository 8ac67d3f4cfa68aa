//! Every flow Careline can run, loaded once at start from `flows.dir` and shared by all calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diagnostic::Diagnostic;
use super::load::{self, Source};
use super::program::Flow;
use super::resources::Resources;
use super::validate::{self, Options};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("flow folder {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every error of every file, one per line.
    #[error("{} problem(s) in contact flows:\n{}", .0.len(), lines(.0))]
    Invalid(Vec<Diagnostic>),
}

fn lines(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The loaded flows, by every name they answer to (Name and file stem).
#[derive(Debug, Default)]
pub struct Catalog {
    flows: HashMap<Arc<str>, Arc<Flow>>,
    /// In load order, for listing.
    order: Vec<Arc<Flow>>,
}

/// Lists `*.json` in `dir`, sorted.
pub(crate) fn flow_files(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let err = |source| CatalogError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads the flows `flows.dir` names: every `*.json` in the folder, or the flows built into
/// Careline (see [`crate::shipped`]). Unreadable or unparsable files become diagnostics.
pub(crate) fn read_folder(dir: &Path) -> Result<(Vec<Source>, Vec<Diagnostic>), CatalogError> {
    if crate::shipped::built_in(dir, crate::shipped::FLOWS_DIR) {
        let mut sources = Vec::new();
        let mut diags = Vec::new();
        for (name, text) in crate::shipped::flows() {
            let file = format!("{}/flows/{name}", crate::shipped::ORIGIN);
            let stem = name.trim_end_matches(".json");
            match load::parse(&file, stem, text) {
                Ok(s) => sources.push(s),
                Err(d) => diags.push(d),
            }
        }
        return Ok((sources, diags));
    }
    Ok(read_all(&flow_files(dir)?))
}

impl Catalog {
    /// Loads and checks `files` together (flows refer to each other). Returns the catalog and
    /// its warnings, or every error at once.
    pub fn load(
        files: &[PathBuf],
        resources: &mut Resources,
        opts: Options,
    ) -> Result<(Catalog, Vec<Diagnostic>), CatalogError> {
        Catalog::check(read_all(files), resources, opts)
    }

    /// Checks flows already read (see [`read_folder`]) together.
    pub fn check(
        (sources, mut diags): (Vec<Source>, Vec<Diagnostic>),
        resources: &mut Resources,
        opts: Options,
    ) -> Result<(Catalog, Vec<Diagnostic>), CatalogError> {
        for s in &sources {
            resources.flows.insert(s.name.clone());
            resources.flows.insert(stem(&s.file));
        }
        let mut catalog = Catalog::default();
        for s in sources {
            let stem = stem(&s.file);
            let (flow, d) = validate::check(s, resources, opts);
            diags.extend(d);
            if let Some(flow) = flow {
                let flow = Arc::new(flow);
                catalog.flows.insert(flow.name.clone(), flow.clone());
                catalog.flows.entry(stem.into()).or_insert(flow.clone());
                catalog.order.push(flow);
            }
        }
        if diags.iter().any(Diagnostic::is_error) {
            diags.retain(Diagnostic::is_error);
            return Err(CatalogError::Invalid(diags));
        }
        Ok((catalog, diags))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Flow>> {
        self.flows.get(name)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Flow>> {
        self.order.iter()
    }
}

/// Reads every file; unreadable or unparsable ones become diagnostics.
pub(crate) fn read_all(files: &[PathBuf]) -> (Vec<Source>, Vec<Diagnostic>) {
    let mut sources = Vec::with_capacity(files.len());
    let mut diags = Vec::new();
    for f in files {
        match load::read(f) {
            Ok(s) => sources.push(s),
            Err(d) => diags.push(d),
        }
    }
    (sources, diags)
}

fn stem(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_string())
}
