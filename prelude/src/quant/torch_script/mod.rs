//! The PyTorch side of the workbench: quantized TorchScript modules (FX graph mode, fbgemm).
//!
//! What is where in such a module, and how it is reached:
//! - A quantized conv/linear weight sits in a `_packed_params` attribute, an opaque libtorch
//!   custom-class object that tch cannot open. A small C++ shim (`prelude/csrc/torchscript.cpp`,
//!   compiled by build.rs against the wheel's libtorch headers) unpacks it with the boxed
//!   dispatcher call `quantized::conv2d_unpack` / `linear_unpack`, and repacks an edited weight
//!   with `quantized::conv2d_prepack` (keeping bias, stride, padding, dilation and groups) or
//!   `linear_prepack`. The weight comes back as a quantized `tch::Tensor` (qint8, per tensor or
//!   per channel), read and rebuilt with tch.
//! - An activation's scale and zero point are operands of the op that produces it:
//!   `quantized::conv2d_relu(x, packed, scale, zero_point)`, `quantized::add_relu(a, b, …)`,
//!   `aten::quantize_per_tensor(x, scale, zero_point, dtype)`. Tracing bakes them into the
//!   `forward` graph as constants, or reads them from module attributes (buffers). The shim lists
//!   these operands in every module's `forward` graph and replaces them: a new graph constant, or
//!   a new attribute value.
//!
//! Versions in memory: a version is a module held by the shim (a [`Script`]), never changed
//! once made; an edit makes a new one that shares with its parent everything the edit does not
//! touch, with no save or load. A module is a tree of objects; its code lives in their class
//! types (one graph per method, each with its own graph executor), and a caller's graph is bound
//! to the exact types of the submodules it calls. So a new attribute value (a repacked weight,
//! a scale buffer) gets new objects from the root down to the module that holds it — shallow
//! copies, same types — and shares every other object and all compiled code with the parent; a
//! new graph constant also gets new types for those modules (methods copied with the path's types
//! remapped) in a compilation unit of its own, freed with the version. libtorch's
//! `Module::clone` is not used: it copies every type and method, repacks every weight through
//! `__setstate__`, and registers it all in the original compilation unit, which keeps it for as
//! long as any module of that load lives (about 3 MiB per version). A version runs inference
//! through the shim on its own handle. Node indices skip graph constants, so a constant an edit
//! inserts moves no other node's index, and a version's parameter table is its parent's with the
//! edited row updated. Bytes are made only when asked for ([`Script::save`]).
//!
//! Capture: a loaded TorchScript module keeps no hooks on intermediate values (forward hooks
//! are a Python-side feature), but its graph can be changed. For capture, a version's root
//! `forward` is rewritten to return a tuple — the model output, then every tensor of the root
//! graph that a quantize op or a direct submodule produces — and its schema updated to match
//! (the shim's `qpt_expose_activations`). These are the *quantized* tensors (dequantized to
//! float by tch): a quantized op computes its float result and rounds it inside one kernel, so
//! the value before rounding is not a tensor TorchScript can give; nor are tensors inside a
//! submodule's own graph. SQNR (before vs after QDQ) therefore stays ONNX only. For AdaRound,
//! `csrc/torchscript_adaround.cpp` makes the same kind of version return instead the input of
//! every packed-weight module the root graph calls, with each conv's settings
//! ([`Script::expose_weight_inputs`]).

use std::ffi::{c_char, c_void};
use std::ptr;

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use super::{QDtype, QuantParam, Role};

mod ffi;
use ffi::*;

/// The signature of the shim's `qpt_expose_*` calls.
type ExposeFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    *mut *mut c_char,
    *mut *mut c_char,
) -> *mut c_void;

/// A tensor that [`Script::expose_activations`] added to the outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Exposed {
    /// The output of node `n` of the root graph (a quantize op).
    Node(i64),
    /// The output of the direct submodule named so.
    Module(String),
}

/// A call of a packed-weight module in the root graph, whose input
/// [`Script::expose_weight_inputs`] added to the outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightCall {
    /// The direct submodule called (a quantized conv or linear module).
    pub module: String,
    /// A conv's settings, as its packed weight holds them; `None` for a linear layer.
    pub conv: Option<ConvSettings>,
}

/// A packed conv weight's settings (height, width).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvSettings {
    /// Stride.
    pub stride: [i64; 2],
    /// Zero padding on each side (top = bottom, left = right).
    pub padding: [i64; 2],
    /// Dilation.
    pub dilation: [i64; 2],
    /// Groups.
    pub groups: i64,
}

impl ConvSettings {
    fn parse(fields: &[&str]) -> Result<ConvSettings> {
        let ints =
            |f: &str| -> Result<Vec<i64>> { f.split(',').map(|x| Ok(x.parse::<i64>()?)).collect() };
        let pair = |f: &str| -> Result<[i64; 2]> {
            match ints(f)?.as_slice() {
                [a, b] => Ok([*a, *b]),
                [a] => Ok([*a, *a]),
                other => bail!("a 2-D conv setting has {} values", other.len()),
            }
        };
        let [stride, padding, dilation, groups] = fields else {
            bail!("a conv needs stride, padding, dilation and groups; got {fields:?}");
        };
        Ok(ConvSettings {
            stride: pair(stride)?,
            padding: pair(padding)?,
            dilation: pair(dilation)?,
            groups: groups.parse()?,
        })
    }
}

/// One version of a TorchScript module, held by the shim. A `Script` is never changed: an edit
/// returns a new `Script` that shares every object and all code it does not change with this one.
pub struct Script {
    handle: *mut c_void,
}

// SAFETY: the module behind a handle is never changed after the shim call that made it returns
// (edits make new objects and types, see csrc/torchscript.cpp), and libtorch's `Module::forward`
// may run on several threads at once (graph executors compile under a lock).
unsafe impl Send for Script {}
unsafe impl Sync for Script {}

impl Drop for Script {
    fn drop(&mut self) {
        // SAFETY: the handle came from the shim and is freed once.
        unsafe { qpt_free(self.handle) }
    }
}

/// A new `Script` from a handle the shim returned, or the error it set (a null handle).
fn script(handle: *mut c_void, err: *mut c_char) -> Result<Script> {
    if handle.is_null() {
        return Err(take_error(err));
    }
    Ok(Script { handle })
}

/// A token for the names of the types an edit makes (the shim appends it to a type's namespace).
fn c_token(token: &str) -> Result<std::ffi::CString> {
    anyhow::ensure!(
        !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "type name token `{token}` must be a non-empty identifier"
    );
    Ok(std::ffi::CString::new(token)?)
}

/// Where a parameter lives in the module tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// The packed weight of module number `module` (in `named_modules` order).
    Weight {
        /// Module index.
        module: i64,
    },
    /// The scale/zero-point operands of node `node` of module `module`'s forward graph.
    Operand {
        /// Module index.
        module: i64,
        /// Node index in the graph, not counting constants (an edit that inserts a constant
        /// moves no other node's index).
        node: i64,
        /// Operand index of the scale.
        scale_input: i64,
        /// Operand index of the zero point.
        zp_input: i64,
    },
}

impl Script {
    /// Loads a module from TorchScript bytes.
    pub fn load(bytes: &[u8]) -> Result<Script> {
        crate::torch::init_runtime()?;
        let mut err = ptr::null_mut();
        // SAFETY: valid slice; err is an out-parameter.
        let handle = unsafe { qpt_load(bytes.as_ptr(), bytes.len(), &mut err) };
        if handle.is_null() {
            return Err(take_error(err));
        }
        Ok(Script { handle })
    }

    /// Serializes the module; the bytes depend only on what the module is. (libtorch's pickler
    /// memoizes an object or tensor when anything else holds a reference to it too, and
    /// versions share objects with each other, so a module is saved once, loaded back — a tree
    /// that shares nothing — and saved again.)
    pub fn save(&self) -> Result<Vec<u8>> {
        Script::load(&self.save_as_is()?)?.save_as_is()
    }

    fn save_as_is(&self) -> Result<Vec<u8>> {
        let mut err = ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: valid handle; out-parameters.
        let buf = unsafe { qpt_save(self.handle, &mut len, &mut err) };
        if buf.is_null() {
            return Err(take_error(err));
        }
        // SAFETY: buf holds len bytes, malloc'ed by the shim and freed once here.
        let out = unsafe { std::slice::from_raw_parts(buf, len) }.to_vec();
        unsafe { qpt_free_bytes(buf) };
        Ok(out)
    }

    fn describe(&self) -> Result<String> {
        let mut err = ptr::null_mut();
        // SAFETY: valid handle.
        let text = unsafe { qpt_describe(self.handle, &mut err) };
        shim_string(text, err)
    }

    /// The dataflow of the root `forward` graph, as `csrc/torchscript_graph.cpp` lists it (one
    /// line per graph input, node, submodule call and output; read by `quant::graph`).
    pub fn graph_listing(&self) -> Result<String> {
        let mut err = ptr::null_mut();
        // SAFETY: valid handle.
        let text = unsafe { qpt_graph(self.handle, &mut err) };
        shim_string(text, err)
    }

    /// The quantized weight of module `module`, and its float bias if it has one.
    pub fn weight_and_bias(&self, module: i64) -> Result<(Tensor, Option<Tensor>)> {
        let (mut w, mut b, mut err) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        // SAFETY: valid handle; out-parameters.
        if unsafe { qpt_get_weight(self.handle, module, &mut w, &mut b, &mut err) } == 0 {
            return Err(take_error(err));
        }
        // SAFETY: the shim returns new at::Tensor objects, which tch's Tensor owns.
        let weight = unsafe { Tensor::from_ptr(w as *mut torch_sys::C_tensor) };
        let bias =
            (!b.is_null()).then(|| unsafe { Tensor::from_ptr(b as *mut torch_sys::C_tensor) });
        Ok((weight, bias))
    }

    /// The quantized weight of module `module`.
    pub fn weight(&self, module: i64) -> Result<Tensor> {
        Ok(self.weight_and_bias(module)?.0)
    }

    fn with_weight(&self, module: i64, weight: &Tensor) -> Result<Script> {
        let mut err = ptr::null_mut();
        // SAFETY: valid handle and tensor pointer.
        let handle = unsafe {
            qpt_with_weight(
                self.handle,
                module,
                weight.as_ptr() as *const c_void,
                &mut err,
            )
        };
        script(handle, err)
    }

    fn with_operand(
        &self,
        (module, node, input): (i64, i64, i64),
        value: f64,
        int: bool,
        token: &str,
    ) -> Result<Script> {
        let token = c_token(token)?;
        let mut err = ptr::null_mut();
        // SAFETY: valid handle and NUL-terminated token.
        let handle = unsafe {
            qpt_with_operand(
                self.handle,
                module,
                node,
                input,
                value,
                int as i32,
                token.as_ptr(),
                &mut err,
            )
        };
        script(handle, err)
    }

    /// Runs `forward` on `input` (no autograd): the output, or the elements of an output tuple
    /// (None where an element is not a tensor).
    pub fn forward(&self, input: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (mut count, mut err) = (0usize, ptr::null_mut());
        // SAFETY: valid handle and tensor pointer; out-parameters.
        let array = unsafe {
            qpt_forward(
                self.handle,
                input.as_ptr() as *const c_void,
                &mut count,
                &mut err,
            )
        };
        if array.is_null() {
            return Err(take_error(err));
        }
        // SAFETY: `array` holds `count` pointers, each null or a new at::Tensor that tch's Tensor
        // then owns; the array itself is malloc'ed by the shim and freed once here.
        let items = unsafe { std::slice::from_raw_parts(array, count) }
            .iter()
            .map(|&t| {
                (!t.is_null()).then(|| unsafe { Tensor::from_ptr(t as *mut torch_sys::C_tensor) })
            })
            .collect();
        unsafe { qpt_free_array(array) };
        Ok(items)
    }

    /// A new version whose `forward` returns a tuple: the model output, then every quantized
    /// tensor the root graph computes (quantize ops and direct submodule calls), listed in order.
    /// Its root gets a new type, named with `token`.
    pub fn expose_activations(&self, token: &str) -> Result<(Script, Vec<Exposed>)> {
        self.exposed(token, qpt_expose_activations, |f| match f {
            ["N", n, ..] => Ok(Exposed::Node(n.parse()?)),
            ["M", name] => Ok(Exposed::Module(name.to_string())),
            _ => bail!("not an exposed node or module"),
        })
    }

    /// A new version whose `forward` returns a tuple: the model output, then the input of each
    /// call of a packed-weight module in the root graph (the quantized tensor it is given), in
    /// graph order, as listed. Its root gets a new type, named with `token`.
    pub fn expose_weight_inputs(&self, token: &str) -> Result<(Script, Vec<WeightCall>)> {
        self.exposed(token, qpt_expose_weight_inputs, |f| match f {
            ["linear", module] => Ok(WeightCall {
                module: module.to_string(),
                conv: None,
            }),
            ["conv2d", module, settings @ ..] => Ok(WeightCall {
                module: module.to_string(),
                conv: Some(ConvSettings::parse(settings)?),
            }),
            _ => bail!("not a packed conv or linear module"),
        })
    }

    /// The version a shim call that rewrites the root `forward` makes (its root gets a new type
    /// named with `token`), and what it added, one `line` per tab-separated listing line.
    fn exposed<T>(
        &self,
        token: &str,
        expose: ExposeFn,
        line: impl Fn(&[&str]) -> Result<T>,
    ) -> Result<(Script, Vec<T>)> {
        let token = c_token(token)?;
        let (mut listing, mut err) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: valid handle and token; out-parameters.
        let handle = unsafe { expose(self.handle, token.as_ptr(), &mut listing, &mut err) };
        let exposed = script(handle, err)?;
        let items = take_string(listing)
            .lines()
            .map(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                line(&fields).with_context(|| format!("unexpected line from the shim: {l}"))
            })
            .collect::<Result<_>>()?;
        Ok((exposed, items))
    }

    /// Every quantization parameter, with where it lives.
    pub fn params(&self) -> Result<Vec<(QuantParam, Location)>> {
        let text = self.describe()?;
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        let mut out = Vec::new();
        for (index, f) in lines.iter().enumerate() {
            match f.first() {
                Some(&"W") if f.len() >= 4 => {
                    let module: i64 = f[1].parse()?;
                    let owner = f[2].strip_suffix("._packed_params").unwrap_or(f[2]);
                    let w = self.weight(module)?;
                    let (scales, zero_points, axis) = weight_qparams(&w)?;
                    out.push((
                        QuantParam {
                            tensor: format!("{owner}.weight"),
                            role: Role::Weight,
                            dtype: weight_dtype(&w)?,
                            scales,
                            zero_points,
                            axis,
                            shape: w.size().iter().map(|&d| d as usize).collect(),
                            producer: None,
                            consumers: vec![owner.to_string()],
                            quantize_node: None,
                            dequantize_nodes: Vec::new(),
                            scale_initializer: format!("{}._packed_params", f[2]),
                            zero_point_initializer: format!("{}._packed_params", f[2]),
                            quantized_initializer: Some(format!("{}._packed_params", f[2])),
                            dequantized_output: None,
                        },
                        Location::Weight { module },
                    ));
                }
                Some(&"A") if f.len() >= 13 => {
                    let module: i64 = f[1].parse()?;
                    let owner = f[2];
                    let same_module = lines
                        .iter()
                        .filter(|g| g.first() == Some(&"A") && g.get(1) == Some(&f[1]))
                        .count();
                    // Names, most telling first: the module that owns the op (one op per
                    // module); the attribute the scale is read from without its `_scale_0`
                    // suffix (FX names it after the quantized value); else the op and its
                    // ordinal among the same ops of its module (`add_relu`, `add_relu_1`, …).
                    let op = f[4].rsplit("::").next().unwrap_or(f[4]);
                    let ordinal = lines[..index]
                        .iter()
                        .filter(|g| {
                            g.first() == Some(&"A")
                                && g.get(1) == Some(&f[1])
                                && g.get(4) == Some(&f[4])
                        })
                        .count();
                    let from_attr = f[6].strip_prefix("a:").and_then(|a| {
                        let stem = a.rsplit_once("_scale_")?.0.trim_start_matches('_');
                        (!stem.is_empty()).then(|| stem.to_string())
                    });
                    let local = match from_attr {
                        Some(stem) => stem,
                        None if ordinal == 0 => op.to_string(),
                        None => format!("{op}_{ordinal}"),
                    };
                    let name = if owner.is_empty() {
                        local
                    } else if same_module == 1 {
                        owner.to_string()
                    } else {
                        format!("{owner}/{local}")
                    };
                    let dtype = match f[12] {
                        "12" => QDtype::Int8,
                        _ => QDtype::Uint8,
                    };
                    let source = |s: &str| match s.strip_prefix("a:") {
                        Some(attr) => format!("attribute {attr}"),
                        None => "graph constant".to_string(),
                    };
                    out.push((
                        QuantParam {
                            tensor: name,
                            role: Role::Activation,
                            dtype,
                            scales: vec![f[7].parse::<f64>()? as f32],
                            zero_points: vec![f[10].parse::<f64>()? as i32],
                            axis: None,
                            shape: Vec::new(),
                            producer: Some(if owner.is_empty() {
                                f[4].to_string()
                            } else {
                                format!("{owner}: {}", f[4])
                            }),
                            consumers: Vec::new(),
                            quantize_node: Some(format!(
                                "{} #{} ({})",
                                if owner.is_empty() { "forward" } else { owner },
                                f[3],
                                f[4]
                            )),
                            dequantize_nodes: Vec::new(),
                            scale_initializer: source(f[6]),
                            zero_point_initializer: source(f[9]),
                            quantized_initializer: None,
                            dequantized_output: None,
                        },
                        Location::Operand {
                            module,
                            node: f[3].parse()?,
                            scale_input: f[5].parse()?,
                            zp_input: f[8].parse()?,
                        },
                    ));
                }
                _ => {}
            }
        }
        if out.is_empty() {
            bail!("the TorchScript module has no quantized weights or quantize operands");
        }
        // Names must identify one parameter each.
        let names: Vec<String> = out.iter().map(|(p, _)| p.tensor.clone()).collect();
        for (i, (p, _)) in out.iter_mut().enumerate() {
            if names.iter().filter(|n| **n == names[i]).count() > 1 {
                p.tensor = format!("{}#{i}", names[i]);
            }
        }
        Ok(out)
    }

    /// A new version with an activation's scale or zero point set: a new graph constant (the
    /// module that holds it, and its ancestors, get new types named with `token`) or a new
    /// attribute value.
    pub fn with_activation(&self, at: &Location, value: Operand, token: &str) -> Result<Script> {
        let Location::Operand {
            module,
            node,
            scale_input,
            zp_input,
        } = *at
        else {
            bail!("not an activation");
        };
        match value {
            Operand::Scale(s) => {
                self.with_operand((module, node, scale_input), s as f64, false, token)
            }
            Operand::ZeroPoint(z) => {
                self.with_operand((module, node, zp_input), z as f64, true, token)
            }
        }
    }

    /// A new version with a weight replaced by `ints` quantized by `scales`/`zero_points` (per
    /// tensor, or per channel along the weight's axis).
    pub fn with_weight_values(
        &self,
        at: &Location,
        ints: &[i32],
        scales: &[f32],
        zero_points: &[i32],
    ) -> Result<Script> {
        let Location::Weight { module } = *at else {
            bail!("not a weight");
        };
        let old = self.weight(module)?;
        let shape = old.size();
        let kind = old.kind();
        let int_kind = match kind {
            Kind::QInt8 => Kind::Int8,
            Kind::QUInt8 => Kind::Uint8,
            other => bail!("weight of kind {other:?} is not handled"),
        };
        let values = Tensor::from_slice(ints)
            .to_kind(int_kind)
            .reshape(shape.as_slice());
        let fresh = if !per_channel(&old)? {
            values
                .internal_make_per_tensor_quantized_tensor(scales[0] as f64, zero_points[0] as i64)
        } else {
            let s = Tensor::from_slice(&scales.iter().map(|&v| v as f64).collect::<Vec<_>>());
            let z = Tensor::from_slice(&zero_points.iter().map(|&v| v as i64).collect::<Vec<_>>());
            values.internal_make_per_channel_quantized_tensor(&s, &z, old.q_per_channel_axis())
        };
        self.with_weight(module, &fresh)
    }
}

/// A new value for an activation's quantization operand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    /// The scale.
    Scale(f32),
    /// The zero point.
    ZeroPoint(i32),
}

/// The integer values of a quantized weight.
pub fn weight_ints(w: &Tensor) -> Result<Vec<i32>> {
    let ints = w.int_repr().to_kind(Kind::Int).contiguous().view(-1);
    Ok(Vec::<i32>::try_from(&ints)?)
}

fn weight_dtype(w: &Tensor) -> Result<QDtype> {
    match w.kind() {
        Kind::QInt8 => Ok(QDtype::Int8),
        Kind::QUInt8 => Ok(QDtype::Uint8),
        other => bail!("weight of kind {other:?} is not handled"),
    }
}

fn weight_qparams(w: &Tensor) -> Result<(Vec<f32>, Vec<i32>, Option<i64>)> {
    Ok(if !per_channel(w)? {
        (
            vec![w.q_scale() as f32],
            vec![w.q_zero_point() as i32],
            None,
        )
    } else {
        let s = w.q_per_channel_scales().to_kind(Kind::Float);
        let z = w.q_per_channel_zero_points().to_kind(Kind::Int);
        (
            Vec::<f32>::try_from(&s)?,
            Vec::<i32>::try_from(&z)?,
            Some(w.q_per_channel_axis()),
        )
    })
}
