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

/// The no-root run the README shows a newcomer: within its first 40 lines,
/// its config valid, on an unprivileged port, probing nothing (so it sends
/// no traffic to the public probe targets of the embedded default).
#[test]
fn readme_quickstart_config_is_valid_and_unprivileged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let head: Vec<&str> = readme.lines().take(40).collect();
    let start = head
        .iter()
        .position(|l| l.ends_with("<<'TOML'"))
        .expect("README's first 40 lines hold a config heredoc");
    let len = head[start + 1..]
        .iter()
        .position(|l| *l == "TOML")
        .expect("the heredoc ends within the first 40 lines");
    let toml = head[start + 1..start + 1 + len].join("\n");
    assert!(
        head.iter()
            .any(|l| l.starts_with("cargo run --release -- serve -c /tmp/getapr.toml")),
        "the README's first 40 lines run the daemon on that config"
    );
    let dir = std::env::temp_dir().join(format!("getapr-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("getapr.toml");
    std::fs::write(&file, &toml).unwrap();
    let config = Config::load(&file);
    std::fs::remove_dir_all(&dir).ok();
    let config = config.unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert!(config.dns.listen.iter().all(|a| a.port() >= 1024), "{toml}");
    assert!(
        config.http.listen.iter().all(|a| a.port() >= 1024),
        "{toml}"
    );
    assert!(
        config.probe.targets.is_empty() && config.probe.stun.is_empty(),
        "{toml}"
    );
    assert!(!config.probe.destinations, "{toml}");
}
