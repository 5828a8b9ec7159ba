//! Where a lab keeps its artifacts (captures, logs, configs), and the summary of them
//! printed when a test fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cmd::{self, HOST, have_program};

/// The file in an artifacts directory that names the process using it.
pub(super) const OWNER_FILE: &str = ".owner-pid";

/// `<base>/<name>`, or `<base>/<name>-<pid>` while another live process uses the former
/// (two test processes running the same test side by side).
pub(super) fn artifacts_dir_for(name: &str) -> PathBuf {
    let base = artifacts_base();
    let plain = base.join(name);
    let owner =
        std::fs::read_to_string(plain.join(OWNER_FILE)).ok().and_then(|s| s.trim().parse::<u32>().ok());
    match owner {
        Some(pid) if pid != std::process::id() && crate::daemon::process_alive(pid) => {
            base.join(format!("{name}-{}", std::process::id()))
        }
        _ => plain,
    }
}

/// The directory under which each lab gets `<name>/`.
fn artifacts_base() -> PathBuf {
    if let Some(d) = std::env::var_os("TEREDO_LAB_ARTIFACTS") {
        return PathBuf::from(d);
    }
    // Test executables live in <target>/<profile>/deps/.
    let target = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        if deps.file_name()? != "deps" {
            return None;
        }
        Some(deps.parent()?.parent()?.to_path_buf())
    });
    target.unwrap_or_else(std::env::temp_dir).join("lab-artifacts")
}

pub(super) fn report(name: &str, artifacts: &Path) {
    let dir = artifacts.display();
    eprintln!("=== lab {name}: artifacts kept in {dir}");
    let Ok(entries) = std::fs::read_dir(artifacts) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut err = std::io::stderr().lock();
    for f in &files {
        let _ = writeln!(err, "  {}", f.display());
    }
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "log")) {
        let text = std::fs::read(f).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        let _ = writeln!(err, "--- {} (last {} lines)", f.display(), lines.len() - from);
        for l in &lines[from..] {
            let _ = writeln!(err, "  {l}");
        }
    }
    if !have_program("tshark") {
        return;
    }
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "pcap")) {
        let out = cmd::output(
            cmd::on_host("tshark").args(["-n", "-r"]).arg(f).args([
                "-c",
                "60",
                "--enable-heuristic",
                "teredo_udp",
            ]),
            HOST,
        );
        let _ = writeln!(err, "--- {} (first 60 packets)", f.display());
        if let Ok(o) = out {
            let _ = err.write_all(&o.stdout);
        }
    }
}
