//! What every benchmark prints first: the machine it ran on. Figures from
//! different CPUs differ by more than the effects measured, so each output
//! names its CPU (model, cores, and the instructions the ciphers use).

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

/// One line naming the machine: CPU model, available parallelism, cipher
/// instructions. Every benchmark binary prints it first.
pub fn describe() -> String {
    format!(
        "machine: CPU {}; {} CPUs available; cipher instructions: {}",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        match cipher_features() {
            f if f.is_empty() => "none detected".to_string(),
            f => f.join(", "),
        }
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
    }
}
