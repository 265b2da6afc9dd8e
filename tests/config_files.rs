//! Every shipped config file must stay valid (as hickory-dns tests its examples).

use std::path::{Path, PathBuf};

use getapr::config::{self, Config};

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable directory entry").path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "toml") {
            out.push(path);
        }
    }
}

#[test]
fn every_file_under_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = Vec::new();
    toml_files(&dir, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("getapr.toml")),
        "found only {files:?}"
    );
    for file in files {
        if let Err(e) = config::check(&file) {
            panic!("{e}");
        }
    }
}

#[test]
fn shipped_default_is_the_embedded_one() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/getapr.toml");
    assert_eq!(Config::load(&file).unwrap(), Config::embedded());
    assert_eq!(Config::embedded(), Config::default());
}
