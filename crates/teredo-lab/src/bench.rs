//! What the lab benchmarks share: running at a priority that other work on a shared
//! machine cannot steal from, so that Miredo and teredo are measured under the same
//! conditions in one run; picking some of a bench's phases or tests by label; and the
//! rounds of repeated runs, with their medians.

use std::path::Path;

/// Unless `TEREDO_BENCH_SHARE_CPU` is set: leave the parent's session, so that the bench
/// has a scheduling group of its own (with autogroup, nice only counts inside a group),
/// give that group the weight of nice -20 and run at nice -20; every daemon, iperf3 and
/// generator started later inherits it. Out of the terminal's session Ctrl-C reaches only
/// cargo, so the bench asks for SIGTERM when its parent dies (the caller handles it like
/// SIGINT, so the guards clean up). `bench` names the bench in warnings.
pub fn raise_priority(bench: &str) {
    if std::env::var_os("TEREDO_BENCH_SHARE_CPU").is_some() {
        return;
    }
    // SAFETY: setsid, prctl and setpriority have no memory-safety preconditions.
    let own_session = unsafe { libc::setsid() } >= 0;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) };
    if own_session
        && Path::new("/proc/self/autogroup").exists()
        && let Err(e) = std::fs::write("/proc/self/autogroup", "-20")
    {
        eprintln!("{bench}: warning: cannot raise the scheduling group's priority: {e}");
    }
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) } != 0 {
        eprintln!("{bench}: warning: cannot raise priority: {}", std::io::Error::last_os_error());
    }
}

/// Whether `label` is picked by the environment variable `var` (see [`picks`]).
pub fn picked(var: &str, label: &str) -> bool {
    picks(&std::env::var(var).unwrap_or_default(), label)
}

/// Whether `list`, comma-separated words, picks `label`: the label contains one of the
/// words; a list of no words picks every label.
pub fn picks(list: &str, label: &str) -> bool {
    let mut words = list.split(',').map(str::trim).filter(|w| !w.is_empty()).peekable();
    words.peek().is_none() || words.any(|w| label.contains(w))
}

/// How many rounds a bench runs its phases: `TEREDO_BENCH_ROUNDS`, from 1 to 100, 1 when
/// unset. Each round runs every phase again, so that a ratio can be given round by round
/// with its median on a machine whose speed drifts.
pub fn rounds() -> Result<usize, String> {
    match std::env::var("TEREDO_BENCH_ROUNDS") {
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| format!("TEREDO_BENCH_ROUNDS={v:?}: expected a count from 1 to 100")),
        Err(_) => Ok(1),
    }
}

/// The median of `values` (the mean of the middle two for an even count), or `None` if
/// there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n.is_multiple_of(2) => Some((v[mid - 1] + v[mid]) / 2.0),
        _ => Some(v[mid]),
    }
}

/// A figure measured in several rounds, as the benches print it: each round's value with
/// `digits` decimals (`n/a` for a round without one), then the median of the known ones.
/// `None` if no round has a value.
pub fn series(values: &[Option<f64>], digits: usize) -> Option<String> {
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    let median = median(&known)?;
    let list: Vec<String> =
        values.iter().map(|v| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))).collect();
    Some(format!("{}; median {median:.digits$}", list.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::{median, picks, series};

    #[test]
    fn series_lists_every_round_and_the_median_of_the_known() {
        assert_eq!(series(&[Some(1.25), None, Some(1.5)], 2).as_deref(), Some("1.25 n/a 1.50; median 1.38"));
        assert_eq!(series(&[Some(0.0931)], 3).as_deref(), Some("0.093; median 0.093"));
        assert_eq!(series(&[None, None], 2), None);
        assert_eq!(series(&[], 2), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.3]), Some(1.3));
        assert_eq!(median(&[1.5, 1.1, 1.3]), Some(1.3));
        assert_eq!(median(&[1.5, 1.0, 1.25, 2.0]), Some(1.375));
    }

    #[test]
    fn labels_are_picked_by_any_word_of_the_list() {
        let list = "UDP 64, teredo (1w)";
        assert!(picks(list, "UDP 64 host->client"));
        assert!(picks(list, "teredo (1w)"));
        assert!(!picks(list, "TCP client->host"));
        assert!(!picks(list, "teredo (2w)"));
        assert!(picks("", "TCP client->host"));
        assert!(picks(" , ", "TCP client->host"));
    }
}
