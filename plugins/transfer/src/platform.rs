//! Which manifest of an index a pull takes: the one for this machine, chosen as containerd's
//! default platform matcher chooses (`platforms.Default()` of containerd/platforms), so a
//! verified pull unpacks what `ctr images pull` would. Linux only; architectures and variants
//! compared once normalized (`x86_64` is `amd64`, `arm64/v8` is `arm64`); a machine runs, in
//! order of preference:
//!
//! - amd64: amd64 (no variant, or `v1`: containerd asks for no higher level), then 386;
//! - arm64: arm64 (`v8`), then 32-bit arm `v8`, `v7`, `v6`, `v5`;
//! - arm `vN` (from `/proc/cpuinfo`): arm `vN` down to `v5`;
//! - anything else: its own architecture without variant.
//!
//! Of entries equally preferred, the first in the index wins.

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

/// The platforms `machine` runs, best first.
fn runs(machine: &Platform) -> Vec<Platform> {
    let arm_from = |version: u32| {
        (5..=version)
            .rev()
            .map(|version| Platform::normalized("arm", &format!("v{version}")))
            .collect::<Vec<_>>()
    };
    match machine.architecture.as_str() {
        "amd64" => vec![machine.clone(), Platform::normalized("386", "")],
        "arm64" => [vec![machine.clone()], arm_from(8)].concat(),
        "arm" => match machine.variant.trim_start_matches('v').parse() {
            Ok(version) => arm_from(version),
            Err(_) => vec![machine.clone()],
        },
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
        architecture: String,
        os: String,
        #[serde(default)]
        variant: String,
    }
    let index: Index = serde_json::from_slice(index).ok()?;
    let preferences = runs(machine);
    index
        .manifests
        .into_iter()
        .filter_map(|entry| {
            let platform = entry.platform?;
            if !platform.os.eq_ignore_ascii_case("linux") {
                return None;
            }
            let platform = Platform::normalized(&platform.architecture, &platform.variant);
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
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "loongarch64" => "loong64",
        "powerpc64" => "ppc64",
        other => other,
    };
    let variant = if architecture == "arm" {
        arm_variant(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
    } else {
        String::new()
    };
    Platform::normalized(architecture, &variant)
}

/// The arm variant `/proc/cpuinfo` gives (`CPU architecture: 7`), with containerd's
/// exception: ARMv6 Raspberry Pis report 7.
fn arm_variant(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let variant = field("CPU architecture").unwrap_or_default();
    let armv6 = field("model name")
        .is_some_and(|model| model.to_lowercase().starts_with("armv6-compatible"));
    if variant == "7" && armv6 {
        return "6".into();
    }
    variant
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
        assert_eq!(arm_variant("processor\t: 0\nCPU architecture: 7\n"), "7");
        let pi = "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n";
        assert_eq!(arm_variant(pi), "6");
        assert_eq!(arm_variant(""), "");
    }

    #[test]
    fn this_machine_is_named_as_oci_names_it() {
        let expected = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        assert_eq!(this_machine().architecture, expected);
    }
}
