//! `qplay bench graph`: how long `graph()` takes to read and lay out a model's graph, to draw
//! it as SVG, and to recolour it with another overlay, for ResNet-8 and for a graph ten times
//! larger made from it (ten copies of ResNet-8 int8 in a chain, each copy's input the previous
//! copy's output; drawn, never run), and for the TorchScript ResNet-8 (its root graph read
//! through the shim; recoloured by the scale change, as it has no SQNR).

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use qplay::data::{Bundled, Dataset};
use qplay::model::Model;
use qplay::quant::graph::{chained, graph_of, Graph};
use qplay::quant::onnx_graph;
use qplay::quant::sqnr::layer_errors;
use qplay::quant::{graph, workbench, Overlay};

/// Arguments of `qplay bench graph`.
#[derive(Args)]
pub struct GraphBench {
    /// Timed repeats of each step; medians are reported.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Copies of ResNet-8 in the larger graph.
    #[arg(long, default_value_t = 10)]
    copies: usize,
    /// Images the SQNR overlay is measured on (not timed).
    #[arg(long, default_value_t = 100)]
    images: usize,
}

fn median_ms(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut xs = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f()?;
        xs.push(t.elapsed().as_secs_f64() * 1e3);
    }
    xs.sort_by(f64::total_cmp);
    Ok(xs[xs.len() / 2])
}

/// Runs the benchmark and prints a Markdown table.
pub fn run(args: GraphBench) -> Result<()> {
    let m = workbench("resnet8_int8")?;
    let float = workbench("resnet8_float")?;
    let data = Dataset::bundled(&qplay::paths::root(), Bundled::Test)?;
    let idx: Vec<usize> = (0..args.images.min(data.len())).collect();
    let errors = layer_errors(&float, &m, &data, &idx)?;
    let small = m.proto()?.clone();
    let big = chained(&small, args.copies);
    println!(
        "| graph | operators | edges | layers | read + lay out (ms) | draw SVG (ms) | recolour + draw (ms) | SVG (kB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, proto, copies) in [
        ("ResNet-8 int8".to_string(), &small, 1),
        (
            format!("{} × ResNet-8 int8", args.copies),
            &big,
            args.copies,
        ),
    ] {
        let params = onnx_graph::quant_params(proto)?;
        let g = graph_of(m.name(), proto, &params)?;
        // The SQNR table's values, each copy's tensors given their original's.
        let base = Overlay::xmodel_err(&errors);
        let mut overlay = base.clone();
        if copies > 1 {
            overlay.values = (0..copies)
                .flat_map(|k| {
                    base.values
                        .iter()
                        .map(move |(t, v)| (format!("{t}__{k}"), *v))
                })
                .collect();
        }
        let layout = median_ms(args.repeats, || {
            graph_of(m.name(), proto, &params).map(drop)
        })?;
        row(&label, args.repeats, layout, &g, &overlay)?;
    }
    let torch = workbench("resnet8_int8_torch")?;
    let edited = torch.with_scale("add_relu_1", 2.0 * torch.param("add_relu_1")?.scales[0])?;
    let g = graph(&torch)?;
    let overlay = Overlay::scale_change(&edited);
    let layout = median_ms(args.repeats, || graph(&torch).map(drop))?;
    row(
        "ResNet-8 int8, TorchScript",
        args.repeats,
        layout,
        &g,
        &overlay,
    )
}

/// One row of the table: the graph's size, `layout` (the median of reading and laying it out,
/// ms), and the medians of drawing it and of recolouring it by `overlay` and drawing it.
fn row(label: &str, repeats: usize, layout: f64, g: &Graph, overlay: &Overlay) -> Result<()> {
    let draw = median_ms(repeats, || {
        g.svg();
        Ok(())
    })?;
    let recolour = median_ms(repeats, || {
        g.with(overlay.clone()).svg();
        Ok(())
    })?;
    let ops = g
        .nodes
        .iter()
        .filter(|n| n.kind == qplay::quant::graph::NodeKind::Op)
        .count();
    println!(
        "| {label} | {ops} | {} | {} | {layout:.1} | {draw:.1} | {recolour:.1} | {:.0} |",
        g.edges.len(),
        g.layout.layers(),
        g.with(overlay.clone()).svg().0.len() as f64 / 1e3
    );
    Ok(())
}
