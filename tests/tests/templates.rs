//! The function templates (spec/templates.md) without a container engine: the real faas-cli
//! pulls them from a clone of this repository, creates a function of each and shrink-wraps it;
//! `gateway up` runs every starter but `dockerfile` on the host under fwatchdog from the same
//! project; each entry program honours `$http_port`; each starter's own tests run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::*;

const LANGS: [&str; 5] = ["bash-streaming", "dockerfile", "node-http", "python3-http", "rust-http"];

/// The answer of each starter to the body `Pi`.
const ANSWERS: [(&str, &str); 4] = [
    ("bash-streaming", "PI"),
    ("node-http", "Hello from Node.js, Pi!\n"),
    ("python3-http", "Hello from Python, Pi!\n"),
    ("rust-http", "Hello from Rust, Pi!\n"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?}: {}\n{text}", out.status);
    text
}

/// Every file and folder under `root`, relative, except what `skip` rejects.
fn tree(root: &Path, skip: &dyn Fn(&Path) -> bool) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if skip(&rel) {
                continue;
            }
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
            out.insert(rel);
        }
    }
    out
}

/// What `local_build` adds to an assembled folder (dependencies, compiler output).
fn local_build_output(rel: &Path) -> bool {
    let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    matches!(first.as_str(), "target" | ".packages") || rel.components().any(|c| c.as_os_str() == "node_modules" || c.as_os_str() == "__pycache__")
}

/// templates.md §9 items 3, 4, 11 and 12, with the real faas-cli: `template pull` from a
/// `git clone --depth=1` of this repository, `new` of every language, `build --shrinkwrap`; then
/// `gateway up` on the same stack file runs every starter but `dockerfile` and assembles the
/// same trees faas-cli does.
#[test]
fn t03_t04_t11_t12_faas_cli_and_gateway_up_run_every_template() {
    let bin = faas_cli().expect("this test needs the real faas-cli (FAAS_CLI, or ../shared/tools/faas-cli beside the checkout)");
    // 3: a shallow clone of the committed repository has every language under template/.
    let src = temp_dir("tpl-clone").join("repo");
    run(Command::new("git").args(["clone", "-q", "--depth=1"]).arg(format!("file://{}", repo().display())).arg(&src));
    let langs: BTreeSet<String> = std::fs::read_dir(src.join("template")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(langs, LANGS.iter().map(|l| l.to_string()).collect(), "languages of the committed template/ (commit template changes before running this test)");

    let proj = temp_dir("tpl-project");
    let mut cli = Cli::at(bin, "http://127.0.0.1:8080");
    cli.cwd = Some(proj.clone());
    let out = cli.ok(&["template", "pull", src.to_str().unwrap()], "");
    assert!(out.contains(&format!("Wrote 5 template(s) : [{}]", LANGS.join(" "))), "{out}");
    for lang in LANGS {
        let name = format!("fn-{lang}");
        // The dockerfile function gets a stack file of its own: `gateway up` refuses it.
        let file = if lang == "dockerfile" { "docker.yaml" } else { "stack.yaml" };
        let mut args = vec!["new", name.as_str(), "--lang", lang, "-q"];
        if proj.join(file).exists() {
            args.extend(["--append", file]);
        } else if file != "stack.yaml" {
            args.extend(["--yaml", file]);
        }
        cli.ok(&args, "");
        assert!(proj.join(&name).is_dir(), "{lang}: handler folder");
    }
    // 4: a handler's own file is added, its `build` and `template` entries are skipped.
    std::fs::write(proj.join("fn-python3-http/extra.txt"), "extra").unwrap();
    std::fs::create_dir_all(proj.join("fn-python3-http/build")).unwrap();
    std::fs::write(proj.join("fn-python3-http/template"), "skipped").unwrap();
    for file in ["stack.yaml", "docker.yaml"] {
        let out = cli.ok(&["build", "--shrinkwrap", "-f", file], "");
        assert!(out.contains("shrink-wrapped to build/fn-"), "{out}");
    }
    let built = |f: &str| proj.join("build").join(f);
    for (f, files) in [
        ("fn-rust-http", &["Dockerfile", "template.yml", "Cargo.toml", "Cargo.lock", "src/main.rs", "function/Cargo.toml", "function/src/lib.rs"][..]),
        ("fn-python3-http", &["Dockerfile", "template.yml", "index.py", "function/handler.py", "function/test_handler.py", "function/requirements.txt", "function/extra.txt"][..]),
        ("fn-node-http", &["Dockerfile", "template.yml", "index.js", "package.json", "function/handler.js", "function/package.json"][..]),
        ("fn-bash-streaming", &["Dockerfile", "template.yml", "function/handler.sh"][..]),
        ("fn-dockerfile", &["Dockerfile"][..]),
    ] {
        for file in files {
            assert!(built(f).join(file).is_file(), "faas-cli build/{f}/{file}");
        }
    }
    assert!(!built("fn-python3-http/function/build").exists() && !built("fn-python3-http/function/template").exists());
    assert!(!built("fn-dockerfile/template.yml").exists() && !built("fn-dockerfile/function").exists());

    // 12: `gateway up` on the same stack file runs each starter on the host.
    let state = temp_dir("tpl-state");
    let mut gw = open_gateway().env("state_dir", state.to_str().unwrap()).arg("up").arg("-f").arg(proj.join("stack.yaml").to_str().unwrap()).no_wait().start();
    // Every function is assembled and built (rust-http: a release build) before the gateway listens.
    gw.wait_listening(Duration::from_secs(900));
    for (lang, answer) in ANSWERS {
        let name = format!("fn-{lang}");
        gw.wait_log(&format!("Deployed: {name}.openfaas-fn"), Duration::from_secs(30));
        gw.wait_available(&name, 1, Duration::from_secs(30));
        let r = gw.post(&format!("/function/{name}"), b"Pi");
        assert_eq!((r.status, r.text().as_str()), (200, answer), "{lang}: {}", gw.log());
        // 4: the folder `gateway up` assembled holds what faas-cli's build context holds.
        let ours = tree(&state.join("build").join(&name), &local_build_output);
        let theirs = tree(&built(&name), &|_| false);
        assert_eq!(ours, theirs, "{lang}: gateway up and faas-cli assemble the same tree");
    }
    let cli_gw = Cli::new(cli.bin.clone(), &gw);
    let out = cli_gw.ok(&["invoke", "fn-python3-http"], "Pi");
    assert!(out.ends_with("Hello from Python, Pi!\n"), "faas-cli invoke: {out}");

    // 11: each http entry program listens on $http_port, not on its upstream_url's port.
    for (lang, cmd) in [("python3-http", "python3 index.py"), ("node-http", "node index.js"), ("rust-http", "./target/release/handler")] {
        let dir = state.join("build").join(format!("fn-{lang}"));
        let (port, other) = (free_port(), free_port());
        let argv: Vec<&str> = cmd.split(' ').collect();
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(&dir)
            .env("http_port", port.to_string())
            .env("upstream_url", format!("http://127.0.0.1:{other}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let answered = eventually(Duration::from_secs(10), || try_request(port, "POST", "/", &[], b"Pi").is_ok_and(|r| r.status == 200));
        let other_refused = try_request(other, "POST", "/", &[], b"Pi").is_err();
        let _ = child.kill();
        let _ = child.wait();
        assert!(answered && other_refused, "{lang}: listens on $http_port ({answered}) and not on upstream_url's port ({other_refused})");
    }

    // 12: a dockerfile function stops `gateway up` before anything starts.
    let out = open_gateway().env("state_dir", temp_dir("tpl-state-d").to_str().unwrap()).arg("up").arg("-f").arg(proj.join("docker.yaml").to_str().unwrap()).run_to_exit(Duration::from_secs(15));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("function fn-dockerfile: lang dockerfile needs a container runtime; deploy its image to a provider instead"), "{}", out.stderr);
}

/// Each starter's own tests, where the language has a test runner: `cargo test` (rust-http),
/// `python3 -m unittest` (python3-http), `npm test` (node-http, node --test). Run on copies, so
/// nothing is written into template/.
#[test]
fn t18_starter_handlers_pass_their_own_tests() {
    let work = temp_dir("starter-tests");
    let copy = |lang: &str| {
        let to = work.join(lang);
        copy_dir(&repo().join("template").join(lang).join("function"), &to);
        to
    };
    let out = run(Command::new("cargo").args(["test", "--quiet"]).current_dir(copy("rust-http")).env("CARGO_TARGET_DIR", work.join("target")));
    assert!(out.contains("2 passed"), "{out}");
    let out = run(Command::new("python3").args(["-m", "unittest", "-v"]).current_dir(copy("python3-http")).env("PYTHONDONTWRITEBYTECODE", "1"));
    assert!(out.contains("Ran 2 tests") && out.contains("OK"), "{out}");
    let out = run(Command::new("npm").args(["test", "--silent"]).current_dir(copy("node-http")));
    assert!(out.contains("# pass 2") && out.contains("# fail 0"), "{out}");
}
