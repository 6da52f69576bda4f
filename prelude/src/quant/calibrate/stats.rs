//! Calibration statistics: the calibration images through the float model's capture sessions
//! for each tensor's smallest and largest value and, for the histogram methods, its histogram.
//! Ranges are onnxruntime's to the bit: the values are those of the unoptimized graph, as
//! onnxruntime's calibrators run it.
//!
//! - Ranges alone: [`super::extremes`] (each image's extremes from ReduceMin/ReduceMax nodes
//!   added to the graph, screened on the optimized graph and settled on the exact one).
//! - With a histogram: one pass over the exact graph that keeps the values (up to
//!   [`KEEP_BYTES`]), takes the ranges from them and then counts them; beyond that budget a
//!   second pass counts.
//!
//! [`super::cache::collect`] chooses between them and keeps both by content (in memory and on
//! disk): another method or option on the same model and images costs no inference.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};

use super::ranges::{Counted, Histogram, MinMax};
use crate::data::Dataset;
use crate::onnx::OnnxModel;
use crate::quant::onnx_graph::{self, proto::ModelProto};

/// Images per inference batch where the values leave ONNX Runtime (models/build.py's
/// calibration batch).
pub const BATCH: usize = 100;

/// Images per batch where only each image's extremes leave it: small batches ran the screen
/// about 5 % faster (1,000 images: 0.20 s against 0.21 s with [`BATCH`]).
pub const EXTREMES_BATCH: usize = 16;

/// Values kept in memory between taking the ranges and counting the histograms (about 500 MB
/// for ResNet-8 on 1,000 images); more images take a second pass instead.
pub const KEEP_BYTES: usize = 1 << 30;

/// What a pass reports after each batch: (what, images done, images in all).
pub type Progress<'a> = &'a dyn Fn(&str, usize, usize);

/// Histograms of every tensor, by name.
pub type Histograms = Arc<BTreeMap<String, Histogram>>;

/// Statistics of a set of tensors over the calibration images.
#[derive(Debug, Default)]
pub struct Stats {
    /// Smallest and largest value of each tensor.
    pub seen: BTreeMap<String, MinMax>,
    /// Histograms, by what they count and their number of bins.
    histograms: Mutex<BTreeMap<(Counted, usize), Histograms>>,
}

/// The inputs of one collection.
pub struct Source<'a> {
    /// The float model.
    pub model: &'a ModelProto,
    /// Tensors to measure (node outputs or the graph input).
    pub tensors: &'a [String],
    /// Calibration images.
    pub data: &'a Dataset,
    /// Which of them.
    pub indices: &'a [usize],
}

fn input_name(model: &ModelProto) -> String {
    model
        .graph
        .as_ref()
        .and_then(|g| g.input.first())
        .map(|i| i.name().to_string())
        .unwrap_or_default()
}

/// What a capture graph's extra outputs are.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Capture {
    /// The measured tensors themselves.
    Values,
    /// Each image's smallest and largest value of each measured tensor (`<t>\u{1}min`,
    /// `<t>\u{1}max`, one value per image).
    Extremes,
}

/// The capture graph (the float graph with the outputs `capture` asks for) and how to run it:
/// optimized, or exactly as onnxruntime's calibrator does; one single-threaded session per
/// core, running batches side by side (faster than one session on every core, and each image's
/// values are the same bits either way).
pub(super) struct Runner {
    bytes: Vec<u8>,
    optimized: bool,
    capture: Capture,
    outputs: Vec<String>,
}

/// The name of a tensor's per-image extremes: `<t>\u{1}min` or `<t>\u{1}max`.
pub(super) fn extreme_name(tensor: &str, max: bool) -> String {
    format!("{tensor}\u{1}{}", if max { "max" } else { "min" })
}

/// Adds, for each of `tensors`, its smallest and largest value per image: Flatten to
/// (images, values), then ReduceMin/ReduceMax over the values (axes an attribute before opset
/// 18, an input from then on).
fn add_extremes(proto: &mut ModelProto, tensors: &[String]) -> Result<Vec<String>> {
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty())
        .map_or(1, |o| o.version());
    let g = proto
        .graph
        .as_mut()
        .ok_or_else(|| anyhow!("ONNX model has no graph"))?;
    let axes = "\u{1}axes".to_string();
    if opset >= 18 {
        g.initializer.push(onnx_graph::proto::TensorProto {
            name: Some(axes.clone()),
            dims: vec![1],
            data_type: Some(onnx_graph::proto::tensor_proto::DataType::Int64 as i32),
            int64_data: vec![1],
            ..Default::default()
        });
    }
    let mut outs = Vec::new();
    for t in tensors {
        let flat = format!("{t}\u{1}flat");
        g.node.push(onnx_graph::proto::NodeProto {
            op_type: Some("Flatten".into()),
            name: Some(flat.clone()),
            input: vec![t.clone()],
            output: vec![flat.clone()],
            attribute: vec![onnx_graph::new_int_attribute("axis", 1)],
            ..Default::default()
        });
        for max in [false, true] {
            let out = extreme_name(t, max);
            let mut attribute = vec![onnx_graph::new_int_attribute("keepdims", 0)];
            let mut input = vec![flat.clone()];
            if opset >= 18 {
                input.push(axes.clone());
            } else {
                attribute.push(onnx_graph::new_ints_attribute("axes", vec![1]));
            }
            g.node.push(onnx_graph::proto::NodeProto {
                op_type: Some(if max { "ReduceMax" } else { "ReduceMin" }.into()),
                name: Some(out.clone()),
                input,
                output: vec![out.clone()],
                attribute,
                ..Default::default()
            });
            outs.push(out);
        }
    }
    Ok(outs)
}

/// The capture graph of `src` with the outputs `capture` asks for, to run optimized or exactly.
pub(super) fn runner(src: &Source<'_>, capture: Capture, optimized: bool) -> Result<Runner> {
    let mut proto = src.model.clone();
    let outputs: Vec<String> = match capture {
        Capture::Extremes => add_extremes(&mut proto, src.tensors)?,
        Capture::Values => {
            let input = input_name(src.model);
            src.tensors
                .iter()
                .filter(|t| **t != input)
                .cloned()
                .collect()
        }
    };
    onnx_graph::add_outputs(&mut proto, &outputs)?;
    Ok(Runner {
        bytes: onnx_graph::encode(&proto),
        optimized,
        capture,
        outputs,
    })
}

/// One batch's tensors: (positions of its images in `Source::indices`, (name, values) per
/// output).
type Batch = (Range<usize>, Vec<(String, Vec<f32>)>);

/// Runs the graph over the images, batches ([`BATCH`] or [`EXTREMES_BATCH`] images at most,
/// fewer so that every core has one) shared out among one session per core, handing each output
/// (and the graph input, when it is measured) to `f` with the positions of its batch's images,
/// on this thread, batches in the order they finish.
pub(super) fn each_batch(
    src: &Source<'_>,
    runner: &Runner,
    what: &str,
    progress: Option<Progress<'_>>,
    mut f: impl FnMut(Range<usize>, String, Vec<f32>),
) -> Result<()> {
    let input = input_name(src.model);
    // A graph input cannot be a graph output: its values come from the batch itself (its
    // extremes are reduced in the graph).
    let feed_input = runner.capture == Capture::Values && src.tensors.contains(&input);
    let select: Vec<&str> = runner.outputs.iter().map(String::as_str).collect();
    let threads = crate::onnx::thread_count().max(1);
    let most = match runner.capture {
        Capture::Values => BATCH,
        Capture::Extremes => EXTREMES_BATCH,
    };
    let size = src.indices.len().div_ceil(threads).clamp(1, most);
    let chunks: Vec<(usize, &[usize])> = src
        .indices
        .chunks(size)
        .enumerate()
        .map(|(k, c)| (k * size, c))
        .collect();
    let workers = threads.min(chunks.len());
    let session = || {
        OnnxModel::from_bytes_threads(
            "calibration",
            std::path::Path::new("calibration.onnx"),
            &runner.bytes,
            runner.optimized,
            1,
        )
    };
    let run = |session: &OnnxModel, (start, chunk): (usize, &[usize])| -> Result<Batch> {
        crate::runtime::interrupt::check()?;
        let batch = src.data.nhwc_batch(chunk);
        let mut out = Vec::new();
        if feed_input {
            out.push((input.clone(), batch.iter().copied().collect()));
        }
        for (name, value) in session.run_outputs(batch.view(), Some(&select))? {
            let array = value.try_extract_array::<f32>()?;
            out.push((name, array.iter().copied().collect()));
        }
        Ok((start..start + chunk.len(), out))
    };
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Result<Batch>>();
        for k in 0..workers {
            let (tx, chunks, run, session) = (tx.clone(), &chunks, &run, &session);
            scope.spawn(move || {
                let session = match session() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                for chunk in chunks.iter().skip(k).step_by(workers) {
                    let result = run(&session, *chunk);
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for result in rx {
            let (images, outputs) = result?;
            done += images.len();
            for (name, values) in outputs {
                f(images.clone(), name, values);
            }
            if let Some(p) = progress {
                p(what, done, src.indices.len());
            }
        }
        Ok(())
    })
}

/// Every tensor of `src` with nothing seen yet.
pub(super) fn empty_ranges(src: &Source<'_>) -> BTreeMap<String, MinMax> {
    src.tensors
        .iter()
        .map(|t| (t.clone(), MinMax::default()))
        .collect()
}

/// Ranges and histograms in one pass, keeping the values while they fit [`KEEP_BYTES`] (beyond
/// that, the histograms are left to a second pass).
pub(super) fn one_pass(
    src: &Source<'_>,
    want: (Counted, usize),
    progress: Option<Progress<'_>>,
) -> Result<Stats> {
    let mut seen = empty_ranges(src);
    let mut kept: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    let mut bytes = 0usize;
    let mut keeping = true;
    let runner = runner(src, Capture::Values, false)?;
    each_batch(src, &runner, "ranges", progress, |_, name, values| {
        if let Some(m) = seen.get_mut(&name) {
            m.add(&values);
            if keeping {
                bytes += 4 * values.len();
                if bytes > KEEP_BYTES {
                    keeping = false;
                    kept.clear();
                } else {
                    kept.entry(name).or_default().push(values);
                }
            }
        }
    })?;
    let stats = Stats::new(seen, BTreeMap::new());
    if keeping {
        let mut hists = stats.empty_histograms(want);
        count_in_parallel(&mut hists, &kept);
        stats
            .histograms
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .insert(want, Arc::new(hists));
    }
    Ok(stats)
}

/// Counts each tensor's kept values into its histogram, tensors spread over the threads.
fn count_in_parallel(
    hists: &mut BTreeMap<String, Histogram>,
    kept: &BTreeMap<String, Vec<Vec<f32>>>,
) {
    let threads = crate::onnx::thread_count().max(1);
    let size = |v: &[Vec<f32>]| v.iter().map(Vec::len).sum::<usize>();
    type Share<'a> = Vec<(&'a mut Histogram, &'a [Vec<f32>])>;
    let mut work: Share<'_> = hists
        .iter_mut()
        .filter_map(|(t, h)| kept.get(t).map(|v| (h, v.as_slice())))
        .collect();
    work.sort_by_key(|(_, v)| std::cmp::Reverse(size(v)));
    let mut shares: Vec<Share<'_>> = (0..threads).map(|_| Vec::new()).collect();
    let mut load = vec![0usize; threads];
    for item in work {
        let least = (0..threads).min_by_key(|&k| load[k]).unwrap_or(0);
        load[least] += size(item.1);
        shares[least].push(item);
    }
    std::thread::scope(|s| {
        for share in shares {
            s.spawn(move || {
                for (h, batches) in share {
                    for values in batches {
                        h.add(values);
                    }
                }
            });
        }
    });
}

impl Stats {
    /// Statistics from ranges and histograms already made.
    pub fn new(
        seen: BTreeMap<String, MinMax>,
        histograms: BTreeMap<(Counted, usize), Histograms>,
    ) -> Stats {
        Stats {
            seen,
            histograms: Mutex::new(histograms),
        }
    }

    /// Every histogram made, by what it counts and its number of bins.
    pub fn all_histograms(&self) -> Vec<((Counted, usize), Histograms)> {
        self.histograms
            .lock()
            .map(|h| h.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    fn empty_histograms(&self, (counted, bins): (Counted, usize)) -> BTreeMap<String, Histogram> {
        self.seen
            .iter()
            .map(|(t, m)| (t.clone(), Histogram::new(counted, bins, *m)))
            .collect()
    }

    /// Histograms counting `want.0` in `want.1` bins, each over the range its tensor spans, and
    /// whether they were made now (by one more pass) rather than kept.
    pub(super) fn histograms(
        &self,
        src: &Source<'_>,
        want: (Counted, usize),
        progress: Option<Progress<'_>>,
    ) -> Result<(Histograms, bool)> {
        if let Some(h) = self
            .histograms
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .get(&want)
        {
            return Ok((h.clone(), false));
        }
        let runner = runner(src, Capture::Values, false)?;
        let mut hists = self.empty_histograms(want);
        each_batch(src, &runner, "histograms", progress, |_, name, values| {
            if let Some(h) = hists.get_mut(&name) {
                h.add(&values);
            }
        })?;
        let hists = Arc::new(hists);
        self.histograms
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .insert(want, hists.clone());
        Ok((hists, true))
    }
}
