//! Calibration statistics: one pass over the calibration images through the float model's
//! capture session (unoptimized, as onnxruntime's calibrators run it) for each tensor's
//! smallest and largest value, and, for the histogram methods, a second pass that counts them.
//! Both are kept in memory by content (model bytes, images, tensors), so trying another method
//! or option on the same model and images costs no inference.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{anyhow, Result};
use sha2::{Digest, Sha256};

use super::ranges::{Counted, Histogram, MinMax};
use crate::data::{to_hex, Dataset};
use crate::onnx::OnnxModel;
use crate::quant::onnx_graph::{self, proto::ModelProto};

/// Images per inference batch (models/build.py's calibration batch).
pub const BATCH: usize = 100;

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

fn cache() -> &'static Mutex<BTreeMap<String, Arc<Stats>>> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Arc<Stats>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn key(src: &Source<'_>) -> String {
    let mut h = Sha256::new();
    h.update(onnx_graph::encode(src.model));
    h.update(crate::quant::cache::key("", src.data, src.indices).as_bytes());
    for t in src.tensors {
        h.update(t.as_bytes());
        h.update([0]);
    }
    to_hex(&h.finalize())
}

/// Runs the float model over the images, batch by batch, handing each tensor's values to `f`.
fn each_batch(
    src: &Source<'_>,
    session: &OnnxModel,
    what: &str,
    progress: Option<Progress<'_>>,
    mut f: impl FnMut(&str, &[f32]),
) -> Result<()> {
    let input_name = src
        .model
        .graph
        .as_ref()
        .and_then(|g| g.input.first())
        .map(|i| i.name().to_string())
        .unwrap_or_default();
    let select: Vec<&str> = src
        .tensors
        .iter()
        .map(String::as_str)
        .filter(|t| *t != input_name)
        .collect();
    for (k, chunk) in src.indices.chunks(BATCH).enumerate() {
        crate::interrupt::check()?;
        let batch = src.data.nhwc_batch(chunk);
        if src.tensors.contains(&input_name) {
            let values = batch
                .as_slice()
                .ok_or_else(|| anyhow!("batch not contiguous"))?;
            f(&input_name, values);
        }
        for (name, value) in session.run_outputs(batch.view(), Some(&select))? {
            let array = value.try_extract_array::<f32>()?;
            let array = array.as_standard_layout();
            f(&name, array.as_slice().unwrap_or(&[]));
        }
        if let Some(p) = progress {
            p(
                what,
                (k * BATCH + chunk.len()).min(src.indices.len()),
                src.indices.len(),
            );
        }
    }
    Ok(())
}

fn session(src: &Source<'_>) -> Result<OnnxModel> {
    let mut proto = src.model.clone();
    onnx_graph::add_outputs(&mut proto, src.tensors)?;
    OnnxModel::from_bytes(
        "calibration",
        std::path::Path::new("calibration.onnx"),
        &onnx_graph::encode(&proto),
        false,
    )
}

/// The statistics of `src`: from memory when the same model, images and tensors were measured
/// before, else one pass.
pub fn collect(src: &Source<'_>, progress: Option<Progress<'_>>) -> Result<Arc<Stats>> {
    let key = key(src);
    if let Some(s) = cache().lock().map_err(|_| anyhow!("poisoned"))?.get(&key) {
        return Ok(s.clone());
    }
    let runner = session(src)?;
    let mut seen: BTreeMap<String, MinMax> = src
        .tensors
        .iter()
        .map(|t| (t.clone(), MinMax::default()))
        .collect();
    each_batch(src, &runner, "ranges", progress, |name, values| {
        if let Some(m) = seen.get_mut(name) {
            m.add(values);
        }
    })?;
    let stats = Arc::new(Stats {
        seen,
        histograms: Default::default(),
    });
    cache()
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .insert(key, stats.clone());
    Ok(stats)
}

impl Stats {
    /// Histograms of `bins` bins counting `counted`, each over the range its tensor spans:
    /// from memory, or one more pass.
    pub fn histograms(
        &self,
        src: &Source<'_>,
        counted: Counted,
        bins: usize,
        progress: Option<Progress<'_>>,
    ) -> Result<Histograms> {
        if let Some(h) = self
            .histograms
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .get(&(counted, bins))
        {
            return Ok(h.clone());
        }
        let runner = session(src)?;
        let mut hists: BTreeMap<String, Histogram> = self
            .seen
            .iter()
            .map(|(t, m)| (t.clone(), Histogram::new(counted, bins, *m)))
            .collect();
        each_batch(src, &runner, "histograms", progress, |name, values| {
            if let Some(h) = hists.get_mut(name) {
                h.add(values);
            }
        })?;
        let hists = Arc::new(hists);
        self.histograms
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .insert((counted, bins), hists.clone());
        Ok(hists)
    }
}
