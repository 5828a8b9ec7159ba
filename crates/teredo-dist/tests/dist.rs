//! What a user of the package sees of the generated files: every man page renders without
//! a warning from groff and from man-db, the section-5 pages describe every directive teredo
//! reads with its default, the section-8 pages every subcommand and option, and the bash
//! completion loads and completes subcommands and options.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use teredo_dist::DistFile;

fn files() -> BTreeMap<String, DistFile> {
    teredo_dist::files().expect("generate").into_iter().map(|f| (f.path.display().to_string(), f)).collect()
}

fn text(f: &DistFile) -> String {
    String::from_utf8(f.contents.clone()).expect("UTF-8")
}

/// Writes `f` under a scratch directory and returns its path.
fn written(f: &DistFile) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("teredo-dist").join(&f.path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &f.contents).unwrap();
    path
}

#[test]
fn every_page_is_there() {
    let files = files();
    for page in [
        "man/man8/teredo.8",
        "man/man8/teredo-run.8",
        "man/man8/teredo-server.8",
        "man/man8/teredo-check-config.8",
        "man/man8/teredo-status.8",
        "man/man8/teredo-address.8",
        "man/man8/teredo-drain.8",
        "man/man8/teredo-undrain.8",
        "man/man8/miredo.8",
        "man/man8/miredo-server.8",
        "man/man8/miredo-checkconf.8",
        "man/man5/miredo.conf.5",
        "man/man5/miredo-server.conf.5",
        "bash-completion/completions/teredo",
        "zsh/vendor-completions/_teredo",
        "fish/vendor_completions.d/teredo.fish",
    ] {
        assert!(files.contains_key(page), "{page} missing: {:?}", files.keys());
    }
    assert_eq!(files.len(), 16, "{:?}", files.keys());
}

#[test]
fn pages_render_without_warnings() {
    for f in files().values().filter(|f| f.path.starts_with("man")) {
        let path = written(f);
        // groff's own warnings (all of them: -ww), without output.
        let o = Command::new("groff")
            .args(["-ww", "-man", "-z"])
            .arg(&path)
            .output()
            .expect("groff (groff-base)");
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "groff -ww -man -z {}:\n{}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        // man-db's check, as lintian runs it, in a UTF-8 locale at 80 columns.
        let o = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_STDERR", "1")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man (man-db)");
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "man --warnings -l {}:\n{}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let shown = String::from_utf8_lossy(&o.stdout);
        assert!(shown.contains("NAME") && shown.contains("SEE ALSO"), "{}:\n{shown}", path.display());
    }
}

/// The entry of `directive` in a section-5 page: from its `.BI Name` line to the next
/// `.TP` or section.
fn entry<'a>(page: &'a str, directive: &str) -> Option<&'a str> {
    let start = page.find(&format!(".TP\n.BI {directive} "))?;
    let rest = &page[start + 4..];
    let end = [rest.find("\n.TP\n"), rest.find("\n.SH ")].into_iter().flatten().min().unwrap_or(rest.len());
    Some(&rest[..end])
}

#[test]
fn conf_pages_describe_every_directive_with_its_default() {
    let files = files();
    for (page, directives) in [
        ("man/man5/miredo.conf.5", teredo::config::client_relay_directives()),
        ("man/man5/miredo-server.conf.5", teredo::config::server_directives()),
    ] {
        let text = text(&files[page]);
        assert!(directives.len() >= 7, "{directives:?}");
        for d in directives {
            let e = entry(&text, d).unwrap_or_else(|| panic!("{page} has no entry for {d}"));
            assert!(e.contains("Default:"), "{page}: the entry of {d} gives no default:\n{e}");
        }
        // No entry for a directive the reader does not know.
        for line in text.lines().filter(|l| l.starts_with(".BI ")) {
            let name = line[4..].split_whitespace().next().unwrap();
            if text.contains(&format!(".TP\n{line}")) {
                let known = teredo::config::client_relay_directives().contains(&name)
                    || teredo::config::server_directives().contains(&name);
                assert!(known, "{page} describes {name}, which teredo does not read");
            }
        }
    }
}

#[test]
fn section_8_pages_have_every_option() {
    let files = files();
    for (page, options) in [
        (
            "man/man8/teredo-run.8",
            &["\\-c", "\\-\\-config", "\\-f", "\\-p", "\\-u", "\\-t", "\\-\\-workers", "\\-\\-no\\-offload"]
                [..],
        ),
        ("man/man8/teredo-server.8", &["\\-\\-tx", "\\-\\-workers", "\\-c"][..]),
        ("man/man8/teredo-status.8", &["\\-\\-json", "\\-\\-peers"][..]),
        ("man/man8/teredo-check-config.8", &["\\-\\-server"][..]),
        ("man/man8/miredo.8", &["\\-c", "\\-f", "\\-p", "\\-u", "\\-t", "/etc/miredo/client\\-hook"][..]),
        ("man/man8/miredo-checkconf.8", &["\\-c", "\\-f", "CONF_FILE"][..]),
        ("man/man8/teredo.8", &["run", "server", "check\\-config", "status", "address"][..]),
    ] {
        let text = text(&files[page]);
        for o in options {
            assert!(text.contains(o), "{page} lacks {o}");
        }
        // The hidden test options stay out of the pages.
        assert!(!text.contains("test\\-"), "{page} shows a hidden option");
    }
}

/// Runs `script` in a bash without start-up files, after sourcing the completion.
fn bash_complete(line: &str) -> Vec<String> {
    let file = written(&files()["bash-completion/completions/teredo"]);
    let words: Vec<&str> = line.split(' ').collect();
    let script = format!(
        "set -e; source {file}; complete -p teredo >/dev/null; COMP_WORDS=({words}); COMP_CWORD={cword}; \
         COMP_LINE='{line}'; COMP_POINT={point}; _teredo teredo '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file = file.display(),
        words = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        cword = words.len() - 1,
        point = line.len(),
        cur = words[words.len() - 1],
        prev = words[words.len().saturating_sub(2)],
    );
    let o = Command::new("bash").args(["--norc", "--noprofile", "-c", &script]).output().expect("bash");
    assert!(o.status.success(), "bash: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn bash_completion_loads_and_completes() {
    assert_eq!(bash_complete("teredo ru"), ["run"]);
    let subcommands = bash_complete("teredo ");
    for s in ["run", "server", "check-config", "status", "address"] {
        assert!(subcommands.iter().any(|c| c == s), "{s} not in {subcommands:?}");
    }
    assert_eq!(bash_complete("teredo run --wor"), ["--workers"]);
    assert!(bash_complete("teredo status --").iter().any(|c| c == "--json"));
    assert_eq!(bash_complete("teredo server --tx "), ["socket", "packet"]);
}

#[test]
fn zsh_and_fish_completions_parse() {
    let files = files();
    for (shell, page, args) in [
        ("zsh", "zsh/vendor-completions/_teredo", &["-n"][..]),
        ("fish", "fish/vendor_completions.d/teredo.fish", &["--no-execute"][..]),
    ] {
        let text = text(&files[page]);
        assert!(text.contains("check-config") && text.contains("workers"), "{page}");
        // Syntax-checked where the shell is installed (neither is in Debian's base system).
        let path = written(&files[page]);
        match Command::new(shell).args(args).arg(&path).output() {
            Ok(o) => {
                assert!(o.status.success(), "{shell} {args:?} {page}: {}", String::from_utf8_lossy(&o.stderr))
            }
            Err(e) => eprintln!("{shell} not installed ({e}): {page} not syntax-checked"),
        }
    }
}
