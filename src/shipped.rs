//! What Careline ships, built into the binary: the prompts (`prompts/<lang>/*.wav`) and the
//! contact flows (`flows/*.json`) of this repository. `prompts.dir` and `flows.dir` default to
//! `prompts` and `flows` in the working folder, as a checkout or an operator's folder has
//! them; where that default folder is absent (after `cargo install`, from any other folder,
//! in a container) the built-in copies are used, and the log says so. A folder an operator
//! configured replaces them and must exist: a mistyped path stops the start, naming it. An
//! empty setting always means the built-in files.

use std::path::Path;

use include_dir::{Dir, include_dir};

use crate::media::prompt::{PromptError, PromptLibrary};

static PROMPTS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/prompts");
static FLOWS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/flows");
static WORKFLOWS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/workflows");

/// How the built-in files are named in logs and errors.
pub const ORIGIN: &str = "(built in)";

/// The default `prompts.dir` and `flows.dir`, relative to the working folder.
pub const PROMPTS_DIR: &str = "prompts";
pub const FLOWS_DIR: &str = "flows";
pub const WORKFLOWS_DIR: &str = "workflows";

/// Whether the setting `dir` (whose default is `default`) means the built-in files.
pub fn built_in(dir: &Path, default: &str) -> bool {
    dir.as_os_str().is_empty() || (dir == Path::new(default) && !dir.exists())
}

/// A folder setting as logs and errors name it (`default`: the setting's default).
pub fn folder_name(dir: &Path, default: &str) -> String {
    if built_in(dir, default) {
        ORIGIN.to_string()
    } else {
        dir.display().to_string()
    }
}

/// The built-in prompts: `(language, name, WAV bytes)`, in name order.
pub fn prompts() -> Vec<(&'static str, &'static str, &'static [u8])> {
    let mut out = Vec::new();
    for lang in PROMPTS.dirs() {
        let Some(lang_name) = lang.path().file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        for file in lang.files() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "wav")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                out.push((lang_name, stem, file.contents()));
            }
        }
    }
    out.sort();
    out
}

/// The built-in flows: `(file name, JSON text)`, in name order.
pub fn flows() -> Vec<(&'static str, &'static str)> {
    json_files(&FLOWS)
}

/// The built-in workflows (`workflows/*.asl.json`): `(file name, JSON text)`, in name order.
pub fn workflows() -> Vec<(&'static str, &'static str)> {
    json_files(&WORKFLOWS)
}

/// A built-in folder's `*.json` files: `(file name, text)`, in name order.
fn json_files(dir: &'static Dir<'static>) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = dir
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "json"))
        .filter_map(|f| Some((f.path().to_str()?, f.contents_utf8()?)))
        .collect();
    out.sort();
    out
}

/// The prompt library `prompts.dir` names: the folder, or the built-in prompts.
pub fn prompt_library(dir: &Path) -> Result<PromptLibrary, PromptError> {
    if built_in(dir, PROMPTS_DIR) {
        PromptLibrary::from_wavs(Path::new(ORIGIN), prompts())
    } else {
        PromptLibrary::load(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_files_are_the_repositorys() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let on_disk = PromptLibrary::load(&root.join("prompts")).unwrap();
        let built_in = prompt_library(Path::new("")).unwrap();
        assert!(super::built_in(
            Path::new("no-such-folder/prompts"),
            "no-such-folder/prompts"
        ));
        assert!(!super::built_in(Path::new("elsewhere"), PROMPTS_DIR));
        assert!(
            prompt_library(Path::new("elsewhere")).is_err(),
            "a configured folder must exist"
        );
        assert_eq!(built_in.len(), on_disk.len());
        assert!(built_in.len() >= 26, "English and Japanese menus");
        let welcome = built_in.get("ja", "welcome").unwrap();
        assert_eq!(welcome.pcm_8k, on_disk.get("ja", "welcome").unwrap().pcm_8k);
        let flows = flows();
        let names: Vec<&str> = flows.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "callback-greeting.json",
                "demo-menu.json",
                "medical-triage.json",
                "patient-call.json",
                "room-dial-in.json",
                "triage-hold.json"
            ]
        );
        for (name, text) in flows {
            assert_eq!(
                std::fs::read_to_string(root.join("flows").join(name)).unwrap(),
                text
            );
        }
        let workflows = workflows();
        let names: Vec<&str> = workflows.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "discharge-follow-up-corrected.asl.json",
                "discharge-follow-up.asl.json"
            ],
            "the brief's discharge follow-up, as written and corrected"
        );
        for (name, text) in workflows {
            assert_eq!(
                std::fs::read_to_string(root.join("workflows").join(name)).unwrap(),
                text
            );
        }
    }
}
