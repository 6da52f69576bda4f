//! `qplay check NOTEBOOK…`: the dataflow checks of [`crate::reactive::check`] on notebook files,
//! without a kernel. Prints each finding as `PATH: cells N, M: error|warning: …`, then a count
//! per notebook; fails when any notebook has an error (a cycle).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::reactive::check::{check, Severity};

/// Arguments of `qplay check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Notebooks (.ipynb) to check.
    #[arg(required = true)]
    notebooks: Vec<PathBuf>,
}

/// The sources of a notebook's code cells, in order.
fn code_cells(path: &PathBuf) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let nb: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a notebook (JSON)", path.display()))?;
    let Some(cells) = nb.get("cells").and_then(|c| c.as_array()) else {
        bail!(
            "{} is not a notebook: it has no `cells` list",
            path.display()
        );
    };
    Ok(cells
        .iter()
        .filter(|c| c.get("cell_type").and_then(|t| t.as_str()) == Some("code"))
        .map(|c| match c.get("source") {
            Some(serde_json::Value::Array(lines)) => {
                lines.iter().filter_map(|l| l.as_str()).collect::<String>()
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => String::new(),
        })
        .collect())
}

/// Runs `qplay check`.
pub fn run(args: CheckArgs) -> Result<()> {
    let mut failed = Vec::new();
    let mut out = String::new();
    for path in &args.notebooks {
        let cells = code_cells(path)?;
        let sources: Vec<&str> = cells.iter().map(String::as_str).collect();
        let found = check(&sources);
        let errors = found
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        for f in &found {
            let cells: Vec<String> = f.cells.iter().map(|c| c.to_string()).collect();
            out.push_str(&format!(
                "{}: code cells {}: {}: {}\n",
                path.display(),
                cells.join(", "),
                f.severity,
                f.message
            ));
        }
        out.push_str(&format!(
            "{}: {} code cells, {errors} errors, {} warnings\n",
            path.display(),
            cells.len(),
            found.len() - errors
        ));
        if errors > 0 {
            failed.push(path.display().to_string());
        }
    }
    super::print_out(&out)?;
    if !failed.is_empty() {
        bail!("dataflow errors in {}", failed.join(", "));
    }
    Ok(())
}
