//! What the machine's CPUs did while a bench ran, from `/proc/stat`: the time counters of
//! one CPU or of all of them, and the split of an interval into user, system, interrupt,
//! idle and steal time. The benches print it beside their figures, so that a run can say
//! which side was short of CPU (a sender that leaves a core idle is not CPU-bound).

/// The time counters of one CPU (`Some(n)`, the `cpuN` line) or of all of them summed
/// (`None`, the `cpu` line), from `/proc/stat`: user, nice, system, idle, iowait, irq,
/// softirq, steal, in clock ticks.
pub fn cpu_times(cpu: Option<usize>) -> Option<[u64; 8]> {
    parse(&std::fs::read_to_string("/proc/stat").ok()?, cpu)
}

/// The online CPUs (not only those this thread may run on): the `cpuN` lines of
/// `/proc/stat`, which the `cpu` line sums; at least 1.
pub fn online_cpus() -> usize {
    std::fs::read_to_string("/proc/stat").map_or(1, |s| count(&s)).max(1)
}

/// [`online_cpus`] out of the text of a `/proc/stat`.
fn count(stat: &str) -> usize {
    let per_cpu =
        |l: &&str| l.strip_prefix("cpu").is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()));
    stat.lines().filter(per_cpu).count()
}

/// Where the idle share (idle with iowait) is in a [`cpu_split`].
pub const IDLE: usize = 3;

/// [`cpu_times`] out of the text of a `/proc/stat`.
fn parse(stat: &str, cpu: Option<usize>) -> Option<[u64; 8]> {
    let name = cpu.map_or_else(|| "cpu".to_owned(), |n| format!("cpu{n}"));
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let mut out = [0u64; 8];
    for (o, x) in out.iter_mut().zip(line.split_whitespace().skip(1)) {
        *o = x.parse().ok()?;
    }
    Some(out)
}

/// What a CPU (or all of them) did between two [`cpu_times`] samples, in percent of the
/// ticks that passed: user (with nice), system, irq + softirq, idle (with iowait), steal.
pub fn cpu_split(a: [u64; 8], b: [u64; 8]) -> [f64; 5] {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y.saturating_sub(*x) as f64).collect();
    let total: f64 = d.iter().sum::<f64>().max(1.0);
    [d[0] + d[1], d[2], d[5] + d[6], d[3] + d[4], d[7]].map(|x| 100.0 * x / total)
}

#[cfg(test)]
mod tests {
    use super::{count, cpu_split, parse};

    const STAT: &str = "cpu  100 5 40 800 10 1 4 0 0 0\n\
                        cpu0 60 5 20 400 5 1 2 0 0 0\n\
                        cpu1 40 0 20 400 5 0 2 0 0 0\n\
                        intr 12345 0 0\n";

    #[test]
    fn reads_the_sum_line_and_each_cpu_line() {
        assert_eq!(parse(STAT, None), Some([100, 5, 40, 800, 10, 1, 4, 0]));
        assert_eq!(parse(STAT, Some(1)), Some([40, 0, 20, 400, 5, 0, 2, 0]));
        assert_eq!(parse(STAT, Some(2)), None);
        assert_eq!(parse("cpu0 1 x 3\n", Some(0)), None, "a counter that is not a number");
        assert_eq!(count(STAT), 2, "the cpuN lines, not the sum line");
    }

    #[test]
    fn splits_an_interval_into_shares_of_the_ticks_that_passed() {
        let a = [100, 5, 40, 800, 10, 1, 4, 0];
        let b = [130, 5, 80, 810, 10, 6, 9, 0];
        // 30 user, 40 system, 10 irq + softirq, 10 idle, 0 steal: 90 ticks.
        let s = cpu_split(a, b);
        let want = [30.0, 40.0, 10.0, 10.0, 0.0].map(|x| 100.0 * x / 90.0);
        for (got, want) in s.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{s:?}");
        }
        assert_eq!(cpu_split(a, a), [0.0; 5], "no ticks passed");
    }
}
