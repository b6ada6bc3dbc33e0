//! What every benchmark prints first: the machine it ran on and how busy it
//! was. Figures from different CPUs differ by more than the effects
//! measured, and on a shared machine so do figures taken under load, so
//! each output names its CPU (model, `nproc`, the instructions the ciphers
//! use) and the load average when it started.

/// The CPU model as `/proc/cpuinfo` names it (`model name`, or on ARM
/// `Hardware` / `CPU part`), or `"unknown"`.
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    ["model name", "Hardware", "CPU part"]
        .iter()
        .find_map(|key| {
            info.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                (name.trim() == *key).then(|| value.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The instructions the ciphers depend on that this CPU has, detected at
/// run time (x86: AES-NI, PCLMULQDQ, VAES, VPCLMULQDQ, AVX2, AVX-512F;
/// aarch64: AES, PMULL, NEON).
pub fn cipher_features() -> Vec<&'static str> {
    let mut out = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        macro_rules! check {
            ($($f:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($f) { out.push($f); })*
            };
        }
        check!("aes", "pclmulqdq", "vaes", "vpclmulqdq", "avx2", "avx512f");
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {
                $(if std::arch::is_aarch64_feature_detected!($f) { out.push($f); })*
            };
        }
        check!("aes", "pmull", "neon");
    }
    out
}

/// What the `nproc` command prints (the CPUs this process may run on), or
/// `None` if it cannot be run.
pub fn nproc() -> Option<usize> {
    let out = std::process::Command::new("nproc").output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// The load averages over 1, 5 and 15 minutes (`/proc/loadavg`), if this
/// system has them.
pub fn load_average() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// The first three fields of a `/proc/loadavg` line.
fn parse_loadavg(line: &str) -> Option<[f64; 3]> {
    let mut fields = line.split_whitespace().map(str::parse::<f64>);
    let mut next = || fields.next()?.ok();
    Some([next()?, next()?, next()?])
}

/// `load average (1 min) 0.42 (5 min 0.30, 15 min 0.25)`, or that it is
/// unknown.
pub fn load() -> String {
    match load_average() {
        Some([one, five, fifteen]) => {
            format!("load average (1 min) {one:.2} (5 min {five:.2}, 15 min {fifteen:.2})")
        }
        None => "load average unknown (no /proc/loadavg)".to_string(),
    }
}

/// One line naming the machine: CPU model, `nproc` and the CPUs available
/// to this process, the cipher instructions, and the load average now.
/// Every benchmark binary prints it first.
pub fn describe() -> String {
    format!(
        "machine: CPU {}; nproc {}; {} CPUs available to this process; cipher instructions: {}; {}",
        cpu_model(),
        nproc().map_or_else(|| "unknown".to_string(), |n| n.to_string()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        match cipher_features() {
            f if f.is_empty() => "none detected".to_string(),
            f => f.join(", "),
        },
        load()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_names_the_cpu_and_its_cores() {
        let line = describe();
        assert!(line.starts_with("machine: CPU "), "{line}");
        assert!(!cpu_model().is_empty());
        assert!(line.contains("CPUs available"), "{line}");
        assert!(line.contains("nproc "), "{line}");
        assert!(line.contains("load average"), "{line}");
    }

    #[test]
    fn loadavg_lines_parse_and_garbage_does_not() {
        assert_eq!(
            parse_loadavg("2.15 1.47 0.97 3/135 30757\n"),
            Some([2.15, 1.47, 0.97])
        );
        assert_eq!(parse_loadavg("2.15 1.47"), None);
        assert_eq!(parse_loadavg("high 1.47 0.97 3/135 1"), None);
        assert_eq!(parse_loadavg(""), None);
    }
}
