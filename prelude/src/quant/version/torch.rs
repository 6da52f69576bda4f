//! The TorchScript body of a version: the module in memory, where each parameter lives in it,
//! the version's evaluation cache key, and the capture module made from it.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, ArrayView4};
use sha2::{Digest, Sha256};

use super::{Body, Change, Format, QuantModel};
use crate::data::to_hex;
use crate::quant::torch_script::{self, Location, Operand, Script};
use crate::quant::{QuantParam, Role};

/// A TorchScript version.
#[derive(Clone)]
pub(super) struct TorchBody {
    /// The module, in memory; it runs inference too.
    script: Arc<Script>,
    /// Where each parameter (same order as `params`) lives in the module tree.
    locations: Arc<Vec<Location>>,
    /// The evaluation cache key (see [`torch_key`]).
    key: Arc<str>,
    /// The serialized module, made on first use (version 0: the file's bytes).
    bytes: Arc<OnceLock<Result<Vec<u8>, String>>>,
    capture: Arc<OnceLock<Result<TorchCapture, String>>>,
}

/// A TorchScript version whose `forward` also returns its quantized intermediate tensors.
struct TorchCapture {
    script: Script,
    /// Names of the tuple elements after the model output.
    names: Vec<String>,
}

impl TorchBody {
    /// Version 0's body and parameter table, from the file's bytes.
    pub(super) fn load(path: &Path, bytes: &[u8]) -> Result<(TorchBody, Vec<QuantParam>)> {
        let script = Script::load(bytes)
            .with_context(|| format!("cannot load TorchScript model {}", path.display()))?;
        let (params, locations): (Vec<_>, Vec<_>) = script
            .params()
            .with_context(|| format!("cannot inspect TorchScript model {}", path.display()))?
            .into_iter()
            .unzip();
        let body = TorchBody {
            script: Arc::new(script),
            locations: Arc::new(locations),
            key: to_hex(&Sha256::digest(bytes)).into(),
            bytes: Arc::new(OnceLock::from(Ok(bytes.to_vec()))),
            capture: Default::default(),
        };
        Ok((body, params))
    }
}

impl Format for TorchBody {
    fn all_ints(&self, _params: &[QuantParam]) -> Vec<Option<Vec<i32>>> {
        self.locations
            .iter()
            .map(|l| match l {
                Location::Weight { module } => self
                    .script
                    .weight(*module)
                    .and_then(|w| torch_script::weight_ints(&w))
                    .ok(),
                Location::Operand { .. } => None,
            })
            .collect()
    }

    fn ints_of(&self, i: usize, p: &QuantParam) -> Result<Vec<i32>> {
        let Location::Weight { module } = self.locations[i] else {
            bail!("`{}` is an activation; it has no stored integers", p.tensor);
        };
        torch_script::weight_ints(&self.script.weight(module)?)
    }

    fn to_bytes(&self, name: &str) -> Result<Vec<u8>> {
        self.bytes
            .get_or_init(|| self.script.save().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow!("cannot serialize `{name}`: {e}"))
    }

    /// Made without serializing the module (see [`torch_key`]).
    fn cache_key(&self, _name: &str) -> Result<String> {
        Ok(self.key.to_string())
    }

    /// One quantize operand pair per activation row, no separate dequantize.
    fn qdq_counts(&self, params: &[QuantParam]) -> (usize, usize) {
        (
            params.iter().filter(|p| p.role == Role::Activation).count(),
            0,
        )
    }

    fn edit(
        &self,
        params: &[QuantParam],
        i: usize,
        p: &QuantParam,
        change: Change,
    ) -> Result<(Body, Vec<QuantParam>)> {
        // The new module shares with this one every object and all code the edit does
        // not change, and the parameter table is this one's with the edited row updated
        // (checked against the shim's listing of the new module by the unit test
        // `torch_tables_match_a_fresh_listing_and_parents_stay_as_they_were`).
        let at = &self.locations[i];
        let mut row = p.clone();
        let (key, script) = if p.role == Role::Activation {
            let value = match &change {
                Change::Scales(s) => Operand::Scale(s[0]),
                Change::ZeroPoints(z) => Operand::ZeroPoint(z[0]),
                _ => bail!("`{}` is an activation; it has no stored integers", p.tensor),
            };
            match value {
                Operand::Scale(s) => row.scales = vec![s],
                Operand::ZeroPoint(z) => row.zero_points = vec![z],
            }
            let key = torch_key(&self.key, &p.tensor, &TorchWrite::Activation(value));
            let script = self.script.with_activation(at, value, &key[..16])?;
            (key, script)
        } else {
            let (mut scales, mut zps, mut ints) = (p.scales.clone(), p.zero_points.clone(), None);
            match change {
                Change::Scales(s) => scales = s,
                Change::ZeroPoints(z) => zps = z,
                Change::Ints(v) => ints = Some(v),
                Change::Requantize {
                    dtype,
                    scales: s,
                    zero_points: z,
                    ints: v,
                } => {
                    if dtype != p.dtype {
                        bail!(
                            "`{}`: TorchScript weights stay {}; {dtype} is for ONNX models",
                            p.tensor,
                            p.dtype
                        );
                    }
                    scales = s;
                    zps = z;
                    ints = Some(v);
                }
                Change::KeepFloat(_) => bail!(
                    "`{}`: keeping a tensor in float is not possible in TorchScript",
                    p.tensor
                ),
            }
            let ints = match ints {
                Some(v) => v,
                None => self.ints_of(i, p)?,
            };
            let script = self.script.with_weight_values(at, &ints, &scales, &zps)?;
            let key = torch_key(
                &self.key,
                &p.tensor,
                &TorchWrite::Weight {
                    ints: &ints,
                    scales: &scales,
                    zero_points: &zps,
                },
            );
            row.scales = scales;
            row.zero_points = zps;
            (key, script)
        };
        let mut params = params.to_vec();
        params[i] = row;
        let body = TorchBody {
            script: Arc::new(script),
            locations: Arc::clone(&self.locations),
            key: key.into(),
            bytes: Default::default(),
            capture: Default::default(),
        };
        Ok((Body::Torch(body), params))
    }

    fn run(&self, model: &QuantModel, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>> {
        let name = &model.info.name;
        crate::model::check_input(model, batch.shape())?;
        let input = crate::torch::input_tensor(batch)?;
        let n = input.size()[0];
        match self.script.forward(&input)?.as_slice() {
            [Some(output)] => crate::torch::scores(name, output, n),
            _ => bail!("TorchScript model `{name}` did not return one tensor"),
        }
    }
}

impl QuantModel {
    /// This TorchScript version's module (never changed; edits make new ones).
    pub(crate) fn torch_script(&self) -> Result<&Script> {
        match &self.body {
            Body::Torch(body) => Ok(&body.script),
            Body::Onnx(_) => bail!("`{}` is not a TorchScript model", self.info.name),
        }
    }

    /// The TorchScript capture module, built on first use: this version's `forward` changed
    /// to also return every quantized tensor its root graph computes.
    fn torch_capture(&self) -> Result<&TorchCapture> {
        let Body::Torch(body) = &self.body else {
            bail!("`{}` is not a TorchScript model", self.info.name);
        };
        body.capture
            .get_or_init(|| {
                let build = || -> Result<TorchCapture> {
                    let (script, exposed) = body.script.expose_activations("capture")?;
                    let names = exposed
                        .iter()
                        .map(|e| match e {
                            torch_script::Exposed::Node(n) => body
                                .locations
                                .iter()
                                .zip(self.params.iter())
                                .find(|(l, _)| {
                                    matches!(l, Location::Operand { module: 0, node, .. } if node == n)
                                })
                                .map(|(_, p)| p.tensor.clone())
                                .unwrap_or_else(|| format!("node_{n}")),
                            torch_script::Exposed::Module(name) => name.clone(),
                        })
                        .collect();
                    Ok(TorchCapture { script, names })
                };
                build().map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }

    /// A TorchScript version's module and where each row of its parameter table lives in it
    /// (`None` for an ONNX version).
    pub(crate) fn torch_script_with_locations(&self) -> Option<(&Script, &[Location])> {
        match &self.body {
            Body::Torch(body) => Some((&body.script, &body.locations)),
            Body::Onnx(_) => None,
        }
    }

    /// Names a TorchScript version can capture (its quantized tensors).
    pub(crate) fn torch_capturable(&self) -> Result<Vec<String>> {
        Ok(self.torch_capture()?.names.clone())
    }

    /// Runs the capture module on `batch`; returns every exposed tensor, dequantized.
    pub(crate) fn torch_capture_run(
        &self,
        batch: ArrayView4<'_, f32>,
    ) -> Result<Vec<(String, ndarray::ArrayD<f32>)>> {
        crate::model::check_input(self, batch.shape())?;
        let cap = self.torch_capture()?;
        let items = cap.script.forward(&crate::torch::input_tensor(batch)?)?;
        if items.len() != cap.names.len() + 1 {
            bail!(
                "the capture module returned {} values; expected {}",
                items.len(),
                cap.names.len() + 1
            );
        }
        let mut all = Vec::new();
        for (name, item) in cap.names.iter().zip(items.into_iter().skip(1)) {
            let Some(t) = item else {
                continue;
            };
            let t = match t.kind() {
                tch::Kind::QInt8 | tch::Kind::QUInt8 | tch::Kind::QInt32 => t.dequantize(),
                _ => t,
            };
            let t = t.to_kind(tch::Kind::Float).contiguous();
            let dims: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let values = Vec::<f32>::try_from(&t.view(-1))?;
            all.push((
                name.clone(),
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&dims), values)?,
            ));
        }
        Ok(all)
    }
}

/// What a TorchScript edit writes.
enum TorchWrite<'a> {
    /// An activation's scale or zero point.
    Activation(Operand),
    /// A weight, repacked from these values.
    Weight {
        ints: &'a [i32],
        scales: &'a [f32],
        zero_points: &'a [i32],
    },
}

/// The evaluation cache key of a TorchScript version made from the version keyed `parent` by
/// writing `write` to parameter `tensor`: sha256 (hex) of a format tag, `parent`, `tensor` and
/// the exact values written (f32 bit patterns, integers), each part length-prefixed. Version 0's
/// key is the sha256 of its file, as for registry models. So equal keys mean the same file
/// edited by the same writes in the same order, hence the same module (a cache hit is never
/// wrong); two routes to one module get two keys (a miss). Change the tag when what an edit
/// writes for the same values changes.
fn torch_key(parent: &str, tensor: &str, write: &TorchWrite<'_>) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(b"qplay torchscript edit v1");
    part(parent.as_bytes());
    part(tensor.as_bytes());
    let le_f32 = |v: &[f32]| {
        v.iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect::<Vec<_>>()
    };
    let le_i32 = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>();
    match write {
        TorchWrite::Activation(Operand::Scale(s)) => {
            part(b"activation scale");
            part(&le_f32(&[*s]));
        }
        TorchWrite::Activation(Operand::ZeroPoint(z)) => {
            part(b"activation zero point");
            part(&le_i32(&[*z]));
        }
        TorchWrite::Weight {
            ints,
            scales,
            zero_points,
        } => {
            part(b"weight");
            part(&le_i32(ints));
            part(&le_f32(scales));
            part(&le_i32(zero_points));
        }
    }
    to_hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::quant::workbench;

    fn script(v: &QuantModel) -> &Script {
        match &v.body {
            Body::Torch(body) => &body.script,
            Body::Onnx(_) => panic!("not a TorchScript version"),
        }
    }

    /// sha256 of the module's canonical serialization, as it is in memory now.
    fn saved(v: &QuantModel) -> String {
        to_hex(&Sha256::digest(script(v).save().unwrap()))
    }

    /// A TorchScript version's parameter table and locations, derived from its parent's and
    /// the edit, are what the shim lists for the new module in memory; and making and running
    /// versions leaves every parent's module as it was (its graphs, attributes and packed
    /// weights: the canonical saved bytes).
    #[test]
    fn torch_tables_match_a_fresh_listing_and_parents_stay_as_they_were() {
        let m = workbench("resnet8_int8_torch").unwrap();
        let x = ndarray::Array4::<f32>::from_shape_fn((4, 32, 32, 3), |(n, h, w, c)| {
            ((n * 7 + h * 3 + w * 5 + c) % 17) as f32 / 17.0
        });
        fn s(v: &QuantModel, t: &str) -> Vec<f32> {
            v.param(t).unwrap().scales.clone()
        }
        type Edit = Box<dyn Fn(&QuantModel) -> QuantModel>;
        let edits: Vec<(&str, Edit)> = vec![
            // a constant of the root graph
            (
                "add_relu_1",
                Box::new(|v| {
                    v.with_scale("add_relu_1", s(v, "add_relu_1")[0] * 1.5)
                        .unwrap()
                }),
            ),
            // a constant of a submodule's graph
            (
                "conv2d_2",
                Box::new(|v| v.with_zero_point("conv2d_2", 250).unwrap()),
            ),
            // a root attribute (a buffer)
            (
                "input",
                Box::new(|v| v.with_scale("input", s(v, "input")[0] * 2.0).unwrap()),
            ),
            // a conv weight (per channel) and the linear weight (in a nested packed-params module)
            (
                "conv2d_4.weight",
                Box::new(|v| v.with_bits("conv2d_4.weight", 3).unwrap()),
            ),
            (
                "dense.weight",
                Box::new(|v| {
                    let scales: Vec<f32> = s(v, "dense.weight").iter().map(|x| x * 0.5).collect();
                    v.with_scales("dense.weight", &scales).unwrap()
                }),
            ),
        ];
        let mut chain = vec![m.clone()];
        for (tensor, edit) in &edits {
            let parent = chain.last().unwrap().clone();
            parent.run(x.view()).unwrap();
            let before = saved(&parent);
            // The same edit on the parent twice (siblings), then the one the chain goes on with.
            let sibling = edit(&parent);
            sibling.run(x.view()).unwrap();
            let v = edit(&sibling.undo().unwrap());
            v.run(x.view()).unwrap();
            assert_eq!(saved(&parent), before, "{tensor}: parent changed");
            assert_eq!(saved(&sibling), saved(&v), "{tensor}: siblings differ");
            let (rows, locations): (Vec<_>, Vec<_>) =
                script(&v).params().unwrap().into_iter().unzip();
            assert_eq!(v.params.as_ref(), &rows, "{tensor}: table");
            let Body::Torch(body) = &v.body else {
                unreachable!()
            };
            assert_eq!(body.locations.as_ref(), &locations, "{tensor}: locations");
            assert_ne!(v.param(tensor).unwrap(), parent.param(tensor).unwrap());
            chain.push(v);
        }
    }
}
