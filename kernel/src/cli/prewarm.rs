//! `qplay prewarm [CELL…]`: starts an engine in a build slot, which compiles the prelude there,
//! marks that slot the warm one (new kernels start from a copy of it, see
//! [`crate::engine::slots`]), then runs the given cells (or a trivial one) and prints their
//! outputs.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;

use crate::engine::slots;
use crate::output::OutputSink;
use crate::session::Session;

/// Arguments of `qplay prewarm`.
#[derive(Args)]
pub struct PrewarmArgs {
    /// Cells to run after start-up.
    cells: Vec<String>,
}

/// Warms a slot and runs the cells.
pub fn run(args: PrewarmArgs) -> Result<()> {
    let slot = slots::acquire()?;
    let start = Instant::now();
    let mut session = Session::start(&slot.dir)?;
    let engine = session.engine().map_err(|e| anyhow!(e))?;
    slots::mark_warm(&slot)?;
    eprintln!(
        "engine started in {:.1} s in {}",
        start.elapsed().as_secs_f64(),
        slot.dir.display()
    );
    let cells = if args.cells.is_empty() {
        vec!["1 + 1".to_string()]
    } else {
        args.cells
    };
    let printer = Arc::new(PrintSink);
    for (i, cell) in cells.iter().enumerate() {
        let start = Instant::now();
        match engine.execute(cell, &format!("cell-{i}"), printer.clone()) {
            Ok(Some(bundle)) => println!("result: {}", serde_json::Value::Object(bundle)),
            Ok(None) => {}
            Err(e) => println!(
                "error: {}: {}\n{}",
                e.ename,
                e.evalue,
                e.traceback.join("\n")
            ),
        }
        eprintln!("cell ran in {:.2} s", start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Prints a cell's outputs on the terminal.
struct PrintSink;

impl OutputSink for PrintSink {
    fn stream(&self, name: &str, text: &str) {
        print!("[{name}] {text}");
    }
    fn display(&self, data: qplay::display::MimeBundle, id: Option<String>, update: bool) {
        let kind = if update { "update" } else { "display" };
        println!(
            "[{kind} {}] {}",
            id.unwrap_or_default(),
            serde_json::Value::Object(data)
        );
    }
    fn clear_output(&self, wait: bool) {
        println!("[clear_output wait={wait}]");
    }
    fn comm(&self, msg_type: &str, content: serde_json::Value, _metadata: serde_json::Value) {
        println!("[{msg_type}] {}", content["comm_id"]);
    }
}
