//! The C functions of the TorchScript shim (`prelude/csrc/*.cpp`) and the helpers that turn
//! their strings and errors into Rust values.

use std::ffi::{c_char, c_void, CStr};

use anyhow::{anyhow, bail, Result};
use tch::Tensor;

extern "C" {
    pub(super) fn qpt_free_string(s: *mut c_char);
    pub(super) fn qpt_load(data: *const u8, len: usize, err: *mut *mut c_char) -> *mut c_void;
    pub(super) fn qpt_free(h: *mut c_void);
    pub(super) fn qpt_describe(h: *mut c_void, err: *mut *mut c_char) -> *mut c_char;
    pub(super) fn qpt_get_weight(
        h: *mut c_void,
        module: i64,
        weight: *mut *mut c_void,
        bias: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> i32;
    pub(super) fn qpt_with_weight(
        h: *mut c_void,
        module: i64,
        weight: *const c_void,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    pub(super) fn qpt_with_operand(
        h: *mut c_void,
        module: i64,
        node: i64,
        input: i64,
        value: f64,
        is_int: i32,
        token: *const c_char,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    pub(super) fn qpt_save(h: *mut c_void, len: *mut usize, err: *mut *mut c_char) -> *mut u8;
    pub(super) fn qpt_free_bytes(b: *mut u8);
    pub(super) fn qpt_forward(
        h: *mut c_void,
        input: *const c_void,
        count: *mut usize,
        err: *mut *mut c_char,
    ) -> *mut *mut c_void;
    pub(super) fn qpt_free_array(a: *mut *mut c_void);
    pub(super) fn qpt_qscheme(tensor: *const c_void) -> i32;
    pub(super) fn qpt_graph(h: *mut c_void, err: *mut *mut c_char) -> *mut c_char;
    pub(super) fn qpt_expose_activations(
        h: *mut c_void,
        token: *const c_char,
        listing: *mut *mut c_char,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    pub(super) fn qpt_expose_weight_inputs(
        h: *mut c_void,
        token: *const c_char,
        listing: *mut *mut c_char,
        err: *mut *mut c_char,
    ) -> *mut c_void;
}

/// Whether a quantized tensor has one scale per channel.
pub(super) fn per_channel(w: &Tensor) -> Result<bool> {
    // SAFETY: a valid tensor pointer; the shim only reads it.
    match unsafe { qpt_qscheme(w.as_ptr() as *const c_void) } {
        0 => Ok(false),
        1 => Ok(true),
        _ => bail!("the weight is not a per-tensor or per-channel affine quantized tensor"),
    }
}

pub(super) fn take_error(err: *mut c_char) -> anyhow::Error {
    if err.is_null() {
        return anyhow!("libtorch failed without a message");
    }
    anyhow!("libtorch: {}", take_string(err))
}

/// Copies a string the shim returned and frees it.
pub(super) fn take_string(text: *mut c_char) -> String {
    // SAFETY: the shim returns a malloc'ed NUL-terminated string, freed here once.
    let out = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    unsafe { qpt_free_string(text) };
    out
}

/// The string a shim call returned, or the error it set (a null result).
pub(super) fn shim_string(text: *mut c_char, err: *mut c_char) -> Result<String> {
    if text.is_null() {
        return Err(take_error(err));
    }
    Ok(take_string(text))
}
