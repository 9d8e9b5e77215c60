//! `--expires`-style flags: an RFC 3339 time, or a span from now such as `7d`, `12h`, `90m`.

use anyhow::{Context, bail};
use tuf_oci::editor::Expiries;

/// Expiry flags shared by the commands that write metadata. Defaults follow common TUF
/// practice: long-lived root, short-lived timestamp.
#[derive(Debug, clap::Args)]
pub struct Expiry {
    /// Expiry of root metadata written [default: 365d].
    #[arg(long)]
    root_expires: Option<String>,
    /// Expiry of targets metadata written, top-level or delegated [default: 90d].
    #[arg(long)]
    targets_expires: Option<String>,
    /// Expiry of snapshot metadata written [default: 7d].
    #[arg(long)]
    snapshot_expires: Option<String>,
    /// Expiry of timestamp metadata written [default: 1d].
    #[arg(long)]
    timestamp_expires: Option<String>,
}

impl Expiry {
    /// Refuses the flags given for roles `command` writes no metadata of (it writes those of
    /// `writes`): ignored, they would leave the signer believing they took.
    pub fn only(&self, command: &str, writes: &[&str]) -> anyhow::Result<()> {
        let given = [
            ("root", &self.root_expires),
            ("targets", &self.targets_expires),
            ("snapshot", &self.snapshot_expires),
            ("timestamp", &self.timestamp_expires),
        ];
        for (role, value) in given {
            if value.is_some() && !writes.contains(&role) {
                bail!("--{role}-expires: {command} writes no {role} metadata");
            }
        }
        Ok(())
    }

    pub fn all(&self) -> anyhow::Result<Expiries> {
        Ok(Expiries {
            root: parse(
                "--root-expires",
                self.root_expires.as_deref().unwrap_or("365d"),
            )?,
            targets: self.targets()?,
            snapshot: parse(
                "--snapshot-expires",
                self.snapshot_expires.as_deref().unwrap_or("7d"),
            )?,
            timestamp: self.timestamp()?,
        })
    }

    pub fn targets(&self) -> anyhow::Result<jiff::Timestamp> {
        parse(
            "--targets-expires",
            self.targets_expires.as_deref().unwrap_or("90d"),
        )
    }

    pub fn timestamp(&self) -> anyhow::Result<jiff::Timestamp> {
        parse(
            "--timestamp-expires",
            self.timestamp_expires.as_deref().unwrap_or("1d"),
        )
    }
}

/// Parses `flag`'s value, an RFC 3339 timestamp or `<n>{s,m,h,d,w}` counted from now. Either must be in the
/// future: metadata signed already expired would stop every client at once.
fn parse(flag: &str, text: &str) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        if at <= jiff::Timestamp::now() {
            bail!("{flag} {text:?} is past: metadata signed with it would be expired already");
        }
        return Ok(at);
    }
    let split = text.char_indices().last().map_or(0, |(i, _)| i);
    let (count, unit) = text.split_at(split);
    // Digits only: a span counts forward from now (a sign would let `-1d` sign metadata
    // that has already expired).
    let count: i64 = count
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| count.parse().ok())
        .flatten()
        .with_context(|| format!("{flag} {text:?}: expected RFC 3339 or e.g. 7d, 12h"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("{flag} {text:?}: unit must be one of s, m, h, d, w"),
    };
    let beyond =
        || format!("{flag} {text:?}: the span must be above zero and end by the year 9999");
    let span = count
        .checked_mul(seconds)
        .filter(|&span| span > 0)
        .with_context(beyond)?;
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(span))
        .with_context(beyond)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn spans_and_timestamps() {
        let now = jiff::Timestamp::now();
        let week = parse("--f", "7d").unwrap();
        assert!(
            week > now
                .checked_add(jiff::SignedDuration::from_hours(167))
                .unwrap()
        );
        assert_eq!(
            parse("--f", "2999-01-01T00:00:00Z").unwrap().to_string(),
            "2999-01-01T00:00:00Z"
        );
        let past = parse("--f", "2000-01-01T00:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(past.contains("is past"), "{past}");
        assert!(parse("--f", "7y").is_err());
        // Past what a timestamp holds: the flag is named.
        let far = parse("--root-expires", "3000000d").unwrap_err().to_string();
        assert!(
            far.contains("--root-expires \"3000000d\"") && far.contains("9999"),
            "{far}"
        );
        assert!(parse("--f", "soon").is_err());
        for bad in ["-1d", "+1d", "0d", "7é", "é", "", "99999999999999999w"] {
            assert!(parse("--f", bad).is_err(), "{bad}");
        }
    }
}
