//! Benchmarks of refresh-machine against what a user would otherwise use.
//!
//! `cargo bench -p refresh-machine-bench` runs them all and rewrites
//! `BENCHMARKS.md` and the charts under `bench/charts/`. This library holds
//! the parts the bench binary is built from, so they can be unit-tested: the
//! naive interceptor it compares against, latency statistics, and the chart
//! and table writers.

pub mod chart;
pub mod naive;
pub mod stats;

/// A Markdown table, built row by row.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles; a title starting with `>` is right-aligned.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row (missing cells are left empty, extra ones dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let titles: Vec<&str> = self
            .header
            .iter()
            .map(|h| h.strip_prefix('>').unwrap_or(h))
            .collect();
        out.push_str(&format!("| {} |\n", titles.join(" | ")));
        let aligns: Vec<&str> = self
            .header
            .iter()
            .map(|h| if h.starts_with('>') { "---:" } else { "---" })
            .collect();
        out.push_str(&format!("|{}|\n", aligns.join("|")));
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    }
}

/// The machine the numbers come from: CPU model, cores, OS, compiler.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kb| {
            format!(", {:.0} GiB", kb as f64 / 1024.0 / 1024.0)
        });
    let rustc =
        std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map_or_else(|| "rustc (unknown version)".into(), |s| s.trim().to_owned());
    format!(
        "{cpu}, {cores} cores{mem}, {} {}; {rustc}, release profile",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_pads() {
        let mut t = Table::new(&["name", ">value"]);
        t.row(vec!["a".into()]);
        t.row(vec!["b".into(), "2".into(), "dropped".into()]);
        assert_eq!(
            t.markdown(),
            "| name | value |\n|---|---:|\n| a |  |\n| b | 2 |\n"
        );
    }
}
