//! The committed `executors/*.wasm` are exactly what `executors/build.sh`
//! produces from the committed sources, wherever the pinned toolchain and
//! the `wasm32v1-none` target are installed (CI installs the target).

use std::path::Path;
use std::process::Command;

fn stdout(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn committed_executors_match_a_rebuild() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let executors = root.join("executors");
    let pinned = std::fs::read_to_string(executors.join("default.toolchain")).unwrap();
    let rustc = stdout(Command::new("rustc").arg("-V")).unwrap_or_default();
    if rustc.trim() != pinned.trim() {
        eprintln!("SKIPPED: the executors are pinned to {pinned:?}, this is {rustc:?}");
        return;
    }
    let targets = stdout(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !targets.lines().any(|t| t.trim() == "wasm32v1-none") {
        eprintln!("SKIPPED: `rustup target add wasm32v1-none` to check the committed executors");
        return;
    }
    let out = std::env::temp_dir().join(format!("peer-executor-rebuild-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("bash")
        .arg(executors.join("build.sh"))
        .arg(&out)
        .env("GUEST_TARGET_DIR", root.join("target/guest"))
        .status()
        .expect("bash runs");
    assert!(status.success(), "executors/build.sh failed");
    for name in
        ["default.wasm", "default-variant.wasm", "bench/sigcheck.wasm", "bench/ecdsa.wasm", "bench/sortmap.wasm"]
    {
        let committed = std::fs::read(executors.join(name)).unwrap();
        let rebuilt = std::fs::read(out.join(name)).unwrap();
        assert!(committed == rebuilt, "executors/{name} differs from a rebuild: run executors/build.sh and commit");
    }
    let a = std::fs::read(executors.join("default.wasm")).unwrap();
    let b = std::fs::read(executors.join("default-variant.wasm")).unwrap();
    assert_ne!(a, b, "the upgrade variant must have other bytes");
    assert_eq!(peer::DEFAULT_EXECUTOR, &a[..], "the embedded executor is the committed one");
}
