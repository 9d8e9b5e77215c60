//! Which manifest of an index a pull takes: the one for this machine, chosen as containerd's
//! default platform matcher chooses (`platforms.Default()` of containerd/platforms), so a
//! verified pull unpacks what `ctr images pull` would. Linux only; architectures and variants
//! compared once normalized (`x86_64` is `amd64`, `arm64/v8` is `arm64`); a machine runs, in
//! order of preference:
//!
//! - amd64: amd64 (no variant, or `v1`: containerd asks for no higher level), then 386;
//! - arm64: arm64 (`v8`), then 32-bit arm `v8`, `v7`, `v6`, `v5`;
//! - arm `vN` (from `/proc/cpuinfo`, or `uname`): arm `vN` down to `v5`;
//! - anything else: its own architecture without variant.
//!
//! Of entries equally preferred, the first in the index wins; entries asking for OS features
//! are never taken (the machine declares none), as in containerd. Entries naming no platform
//! are not taken either: containerd would read their config to learn what they run.

use serde::Deserialize;

/// An architecture and variant, normalized (containerd's `normalizeArch`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Platform {
    architecture: String,
    variant: String,
}

impl Platform {
    fn normalized(architecture: &str, variant: &str) -> Self {
        let (architecture, variant) = (architecture.to_lowercase(), variant.to_lowercase());
        let (architecture, variant) = match (architecture.as_str(), variant.as_str()) {
            ("i386", _) => ("386", ""),
            ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
            ("x86_64" | "x86-64" | "amd64", variant) => ("amd64", variant),
            ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64", ""),
            ("aarch64" | "arm64", "9" | "9.0" | "v9.0") => ("arm64", "v9"),
            ("aarch64" | "arm64", variant) => ("arm64", variant),
            ("armhf", _) => ("arm", "v7"),
            ("armel", _) => ("arm", "v6"),
            ("arm", "" | "7") => ("arm", "v7"),
            ("arm", "5") => ("arm", "v5"),
            ("arm", "6") => ("arm", "v6"),
            ("arm", "8") => ("arm", "v8"),
            (architecture, variant) => (architecture, variant),
        };
        Platform {
            architecture: architecture.to_string(),
            variant: variant.to_string(),
        }
    }
}

/// The platforms `machine` runs, best first (containerd's `platformVector`).
fn runs(machine: &Platform) -> Vec<Platform> {
    // 32-bit arm `vN`, then the older variants down to v5.
    let arm = |variant: &str| {
        let older = match variant.trim_start_matches('v').parse::<u32>() {
            Ok(version) if version > 5 => (5..version).rev().collect(),
            _ => Vec::new(),
        };
        std::iter::once(Platform::normalized("arm", variant))
            .chain(
                older
                    .into_iter()
                    .map(|v| Platform::normalized("arm", &format!("v{v}"))),
            )
            .collect::<Vec<_>>()
    };
    match machine.architecture.as_str() {
        "amd64" => vec![machine.clone(), Platform::normalized("386", "")],
        "arm64" => [vec![machine.clone()], arm("v8")].concat(),
        "arm" => arm(&machine.variant),
        _ => vec![machine.clone()],
    }
}

/// The digest of the entry of `index` (an OCI index or docker manifest list) that `machine`
/// runs best; `None` when it runs none, or `index` is no index.
fn choose_for(index: &[u8], machine: &Platform) -> Option<String> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<EntryPlatform>,
    }
    #[derive(Deserialize)]
    struct EntryPlatform {
        architecture: Option<String>,
        os: Option<String>,
        variant: Option<String>,
        #[serde(rename = "os.features")]
        os_features: Option<Vec<String>>,
    }
    let index: Index = serde_json::from_slice(index).ok()?;
    let preferences = runs(machine);
    index
        .manifests
        .into_iter()
        .filter_map(|entry| {
            let platform = entry.platform?;
            // An empty OS is the machine's own.
            let os = platform.os.unwrap_or_default();
            let features = platform.os_features.unwrap_or_default();
            if !(os.is_empty() || os.eq_ignore_ascii_case("linux")) || !features.is_empty() {
                return None;
            }
            let platform = Platform::normalized(
                platform.architecture.as_deref().unwrap_or_default(),
                platform.variant.as_deref().unwrap_or_default(),
            );
            let rank = preferences.iter().position(|p| *p == platform)?;
            Some((rank, entry.digest))
        })
        // The first of the best: `min_by_key` keeps the first of equal keys.
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, digest)| digest)
}

/// The digest of the entry of `index` for this machine.
pub(crate) fn choose(index: &[u8]) -> Option<String> {
    choose_for(index, &this_machine())
}

/// This machine's platform, as containerd reads it: the architecture as OCI (Go) names it,
/// and for 32-bit arm the variant from `/proc/cpuinfo`.
fn this_machine() -> Platform {
    let little = cfg!(target_endian = "little");
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "loongarch64" => "loong64",
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        "mips" if little => "mipsle",
        "mips64" if little => "mips64le",
        other => other,
    };
    let variant = if architecture == "arm" {
        let machine = rustix::system::uname()
            .machine()
            .to_string_lossy()
            .into_owned();
        // Unreadable, it tells nothing: no variant, which is v7.
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|cpuinfo| arm_variant(&cpuinfo, &machine))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Platform::normalized(architecture, &variant)
}

/// The arm variant as containerd's `getCPUVariant` reads it: `CPU architecture` of
/// `/proc/cpuinfo` (`7`, `6TEJ`, `5TE`, ...), or without it the machine `uname` names
/// (`armv6l`); ARMv6 Raspberry Pis report 7, and are v6. Where neither tells, no variant
/// (which is v7).
fn arm_variant(cpuinfo: &str, machine: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_lowercase())
        })
    };
    let reported = match field("CPU architecture") {
        Some(reported) => reported,
        None => {
            let machine = machine.to_lowercase();
            match machine.strip_prefix("armv").and_then(|rest| rest.get(..1)) {
                _ if machine == "aarch64" => "8".into(),
                Some(version) if "345678".contains(version) => version.into(),
                _ => return String::new(),
            }
        }
    };
    let armv6 = field("model name").is_some_and(|model| model.starts_with("armv6-compatible"));
    let reported = if reported == "7" && armv6 {
        "6"
    } else {
        reported.as_str()
    };
    match reported {
        "8" | "aarch64" => "v8",
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => "v7",
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => "unknown",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, &str)]) -> Vec<u8> {
        let manifests: Vec<_> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, architecture, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": architecture});
                if !variant.is_empty() {
                    platform["variant"] = (*variant).into();
                }
                serde_json::json!({"digest": format!("sha256:{i}"), "platform": platform})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    fn chosen(machine: (&str, &str), entries: &[(&str, &str, &str)]) -> Option<String> {
        choose_for(&index(entries), &Platform::normalized(machine.0, machine.1))
    }

    #[test]
    fn an_amd64_machine_takes_amd64_at_no_higher_level_then_386() {
        let amd64 = ("amd64", "");
        let entries = [
            ("linux", "amd64", "v3"),
            ("windows", "amd64", ""),
            ("linux", "386", ""),
            ("linux", "amd64", "v1"),
            ("linux", "amd64", ""),
        ];
        assert_eq!(chosen(amd64, &entries).as_deref(), Some("sha256:3"));
        let without = [("linux", "amd64", "v3"), ("linux", "386", "")];
        assert_eq!(chosen(amd64, &without).as_deref(), Some("sha256:1"));
        assert_eq!(chosen(amd64, &[("linux", "amd64", "v2")]), None);
    }

    #[test]
    fn an_arm64_machine_takes_arm64_then_32_bit_arm() {
        let arm64 = ("arm64", "v8");
        let entries = [
            ("linux", "arm", "v7"),
            ("linux", "arm64", "v8"),
            ("linux", "arm64", ""),
        ];
        assert_eq!(chosen(arm64, &entries).as_deref(), Some("sha256:1"));
        let arm_only = [("linux", "arm", "v6"), ("linux", "arm", "v7")];
        assert_eq!(chosen(arm64, &arm_only).as_deref(), Some("sha256:1"));
        assert_eq!(chosen(arm64, &[("linux", "arm64", "v9")]), None);
    }

    #[test]
    fn an_arm_machine_takes_its_variant_or_an_older_one() {
        let entries = [("linux", "arm", "v7"), ("linux", "arm", "v6")];
        assert_eq!(chosen(("arm", "v7"), &entries).as_deref(), Some("sha256:0"));
        assert_eq!(chosen(("arm", "v6"), &entries).as_deref(), Some("sha256:1"));
        assert_eq!(chosen(("arm", "v5"), &entries), None);
        // armhf is arm/v7, whatever variant it names.
        assert_eq!(
            chosen(("arm", "7"), &[("linux", "armhf", "")]).as_deref(),
            Some("sha256:0")
        );
    }

    #[test]
    fn the_arm_variant_is_read_as_containerd_reads_it() {
        let cpu =
            |architecture: &str| format!("processor\t: 0\nCPU architecture: {architecture}\n");
        assert_eq!(arm_variant(&cpu("7"), "armv7l"), "v7");
        assert_eq!(arm_variant(&cpu("6TEJ"), "armv7l"), "v6");
        assert_eq!(arm_variant(&cpu("5TE"), "armv7l"), "v5");
        assert_eq!(arm_variant(&cpu("?(12)"), "armv7l"), "v7");
        let pi = "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n";
        assert_eq!(arm_variant(pi, "armv6l"), "v6");
        // Without the field, the machine's name.
        assert_eq!(arm_variant("", "armv6l"), "v6");
        assert_eq!(arm_variant("", "mystery"), "");
        assert_eq!(arm_variant(&cpu("9X"), "armv7l"), "unknown");
    }

    #[test]
    fn an_old_arm_machine_takes_only_its_own_variant() {
        let entries = [("linux", "arm", "v5"), ("linux", "arm", "v4")];
        assert_eq!(chosen(("arm", "v4"), &entries).as_deref(), Some("sha256:1"));
    }

    #[test]
    fn entries_naming_no_platform_or_os_features_are_never_taken() {
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"digest": "sha256:none"},
            {"digest": "sha256:features", "platform":
                {"os": "linux", "architecture": "amd64", "os.features": ["x"]}},
            {"digest": "sha256:no-os", "platform": {"architecture": "amd64", "variant": null}},
        ]});
        let index = serde_json::to_vec(&index).unwrap();
        let amd64 = Platform::normalized("amd64", "");
        assert_eq!(choose_for(&index, &amd64).as_deref(), Some("sha256:no-os"));
        let arm64 = Platform::normalized("arm64", "");
        assert_eq!(choose_for(&index, &arm64), None);
    }

    #[test]
    fn this_machine_is_named_as_oci_names_it() {
        let expected = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            // Machines the project's CI does not run on.
            _ => return,
        };
        assert_eq!(this_machine().architecture, expected);
    }
}
