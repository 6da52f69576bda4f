// A small C interface to the parts of libtorch's TorchScript API that tch does not expose,
// for the quantization workbench (prelude/src/quant/torch_script.rs):
//   - load a module from bytes, save it to bytes;
//   - list its quantized weights (the `_packed_params` objects of quantized conv/linear
//     modules) and the scale / zero-point operands of quantize ops (graph constants or module
//     attributes) in each module's `forward` graph;
//   - unpack / repack a weight through the dispatcher's boxed calls (no private ATen headers);
//   - replace a scale or zero-point operand (a new graph constant, or a new attribute value).
// Every function catches exceptions and reports them as a malloc'ed message in `*err`.

#include <torch/script.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace {

char* dup(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

std::vector<torch::jit::NameModule> modules(torch::jit::Module& m) {
  std::vector<torch::jit::NameModule> all;
  for (const auto& nm : m.named_modules()) all.push_back(nm);
  return all;
}

torch::jit::Module module_at(torch::jit::Module& m, int64_t index) {
  auto all = modules(m);
  if (index < 0 || index >= static_cast<int64_t>(all.size()))
    throw std::runtime_error("module index out of range");
  return all[index].value;
}

bool is_packed(const c10::IValue& v, std::string* kind) {
  if (!v.isObject() && !v.isCustomClass()) return false;
  std::string t = v.type()->str();
  if (t.find("Conv2dPackedParamsBase") != std::string::npos) {
    *kind = "conv2d";
    return true;
  }
  if (t.find("LinearPackedParamsBase") != std::string::npos) {
    *kind = "linear";
    return true;
  }
  return false;
}

torch::jit::Stack call(const char* op, torch::jit::Stack stack) {
  auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(op, "");
  handle.callBoxed(&stack);
  return stack;
}

// Describes where operand `i` of node `n` comes from: "c" (constant) or "a:<attr>" and its value.
bool operand(torch::jit::Module& owner, const std::shared_ptr<torch::jit::Graph>& g,
             torch::jit::Node* n, size_t i, std::string* source, double* value) {
  torch::jit::Value* v = n->input(i);
  torch::jit::Node* p = v->node();
  c10::IValue iv;
  if (p->kind() == c10::prim::Constant) {
    auto c = torch::jit::toIValue(v);
    if (!c) return false;
    iv = *c;
    *source = "c";
  } else if (p->kind() == c10::prim::GetAttr && p->input(0) == g->inputs()[0]) {
    std::string name = p->s(c10::attr::name);
    iv = owner.attr(name);
    *source = "a:" + name;
  } else {
    return false;
  }
  if (iv.isDouble()) *value = iv.toDouble();
  else if (iv.isInt()) *value = static_cast<double>(iv.toInt());
  else if (iv.isTensor() && iv.toTensor().numel() == 1) *value = iv.toTensor().item<double>();
  else return false;
  return true;
}

}  // namespace

extern "C" {

void qpt_free_string(char* s) { std::free(s); }

void* qpt_load(const uint8_t* data, size_t len, char** err) {
  try {
    std::string bytes(reinterpret_cast<const char*>(data), len);
    std::istringstream in(bytes);
    auto* m = new torch::jit::Module(torch::jit::load(in, c10::Device(c10::kCPU)));
    m->eval();
    return m;
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

void qpt_free(void* h) { delete static_cast<torch::jit::Module*>(h); }

// One line per quantized weight and per quantize operand pair (tab-separated):
//   W  module_index  module_name  conv2d|linear
//   A  module_index  module_name  node_index  op  scale_input  scale_source  scale
//      zp_input  zp_source  zero_point  output_name  dtype (ScalarType code, -1 unknown)
char* qpt_describe(void* h, char** err) {
  try {
    auto& root = *static_cast<torch::jit::Module*>(h);
    std::ostringstream out;
    out.precision(17);
    auto all = modules(root);
    for (size_t mi = 0; mi < all.size(); ++mi) {
      auto m = all[mi].value;
      std::string kind;
      if (m.hasattr("_packed_params") && is_packed(m.attr("_packed_params"), &kind))
        out << "W\t" << mi << "\t" << all[mi].name << "\t" << kind << "\n";
      if (!m.find_method("forward")) continue;
      auto g = m.get_method("forward").graph();
      int64_t ni = 0;
      for (torch::jit::Node* n : g->nodes()) {
        std::string op = n->kind().toQualString();
        size_t si = 0, zi = 0;
        int64_t dtype = -1;
        if (op == "aten::quantize_per_tensor" && n->inputs().size() == 4) {
          si = 1;
          zi = 2;
          auto d = torch::jit::toIValue(n->input(3));
          if (d && d->isInt()) dtype = d->toInt();
        } else if (op.rfind("quantized::", 0) == 0 && n->inputs().size() >= 4) {
          si = n->inputs().size() - 2;
          zi = n->inputs().size() - 1;
        } else {
          ++ni;
          continue;
        }
        std::string ss, zs;
        double s = 0, z = 0;
        if (operand(m, g, n, si, &ss, &s) && operand(m, g, n, zi, &zs, &z)) {
          out << "A\t" << mi << "\t" << all[mi].name << "\t" << ni << "\t" << op << "\t" << si
              << "\t" << ss << "\t" << s << "\t" << zi << "\t" << zs << "\t" << z << "\t"
              << n->output(0)->debugName() << "\t" << dtype << "\n";
        }
        ++ni;
      }
    }
    return dup(out.str());
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

// The quantized weight (and float bias, or null) of module `mi`, as new at::Tensor objects.
int qpt_get_weight(void* h, int64_t mi, void** weight, void** bias, char** err) {
  try {
    auto m = module_at(*static_cast<torch::jit::Module*>(h), mi);
    std::string kind;
    auto packed = m.attr("_packed_params");
    if (!is_packed(packed, &kind)) throw std::runtime_error("module has no packed weight");
    auto out = call(kind == "conv2d" ? "quantized::conv2d_unpack" : "quantized::linear_unpack",
                    {packed});
    *weight = new at::Tensor(out[0].toTensor());
    *bias = out[1].isNone() ? nullptr : new at::Tensor(out[1].toTensor());
    return 1;
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return 0;
  }
}

// Repacks module `mi`'s weight from `weight` (a quantized tensor), keeping its bias and its
// convolution settings.
int qpt_set_weight(void* h, int64_t mi, const void* weight, char** err) {
  try {
    auto m = module_at(*static_cast<torch::jit::Module*>(h), mi);
    std::string kind;
    auto packed = m.attr("_packed_params");
    if (!is_packed(packed, &kind)) throw std::runtime_error("module has no packed weight");
    const at::Tensor& w = *static_cast<const at::Tensor*>(weight);
    c10::IValue fresh;
    if (kind == "conv2d") {
      auto old = call("quantized::conv2d_unpack", {packed});
      auto stride = call("quantized::conv2d_stride", {packed})[0];
      auto padding = call("quantized::conv2d_padding", {packed})[0];
      auto dilation = call("quantized::conv2d_dilation", {packed})[0];
      auto groups = call("quantized::conv2d_groups", {packed})[0];
      fresh = call("quantized::conv2d_prepack", {w, old[1], stride, padding, dilation, groups})[0];
    } else {
      auto old = call("quantized::linear_unpack", {packed});
      fresh = call("quantized::linear_prepack", {w, old[1]})[0];
    }
    m.setattr("_packed_params", fresh);
    return 1;
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return 0;
  }
}

// Sets operand `input` of node `ni` in module `mi`'s forward graph to `value`: a new graph
// constant (float, or int when `is_int`) where it was a constant, else a new value of the module
// attribute it was read from (same type; a tensor keeps its dtype).
int qpt_set_operand(void* h, int64_t mi, int64_t ni, int64_t input, double value, int is_int,
                    char** err) {
  try {
    auto m = module_at(*static_cast<torch::jit::Module*>(h), mi);
    auto g = m.get_method("forward").graph();
    torch::jit::Node* n = nullptr;
    int64_t i = 0;
    for (torch::jit::Node* k : g->nodes()) {
      if (i++ == ni) {
        n = k;
        break;
      }
    }
    if (!n || input < 0 || input >= static_cast<int64_t>(n->inputs().size()))
      throw std::runtime_error("node or operand index out of range");
    torch::jit::Node* p = n->input(input)->node();
    if (p->kind() == c10::prim::Constant) {
      torch::jit::WithInsertPoint guard(n);
      c10::IValue iv = is_int ? c10::IValue(static_cast<int64_t>(value)) : c10::IValue(value);
      n->replaceInput(input, g->insertConstant(iv));
    } else if (p->kind() == c10::prim::GetAttr) {
      std::string name = p->s(c10::attr::name);
      auto old = m.attr(name);
      if (old.isTensor()) {
        auto t = old.toTensor();
        m.setattr(name, at::full(t.sizes(), value, t.options()));
      } else if (old.isInt()) {
        m.setattr(name, static_cast<int64_t>(value));
      } else {
        m.setattr(name, value);
      }
    } else {
      throw std::runtime_error("operand is neither a constant nor a module attribute");
    }
    return 1;
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return 0;
  }
}

uint8_t* qpt_save(void* h, size_t* len, char** err) {
  try {
    std::ostringstream out;
    static_cast<torch::jit::Module*>(h)->save(out);
    std::string s = out.str();
    auto* buf = static_cast<uint8_t*>(std::malloc(s.size()));
    std::memcpy(buf, s.data(), s.size());
    *len = s.size();
    return buf;
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

void qpt_free_bytes(uint8_t* b) { std::free(b); }

// Makes the root `forward` return a tuple: its output, then every tensor of the root graph that
// a quantized op, a quantize_per_tensor or a direct submodule's forward produces. Returns one
// line per added element (tab-separated): `N  node_index  op` for an op of the root graph
// (node indices as qpt_describe counts them, before this change), `M  child_name` for a
// submodule call.
char* qpt_expose_activations(void* h, char** err) {
  try {
    auto& root = *static_cast<torch::jit::Module*>(h);
    auto method = root.get_method("forward");
    auto g = method.graph();
    std::ostringstream out;
    std::vector<torch::jit::Value*> values{g->outputs()[0]};
    int64_t ni = 0;
    for (torch::jit::Node* n : g->nodes()) {
      std::string op = n->kind().toQualString();
      bool tensor_out = n->outputs().size() == 1 &&
                        n->output(0)->type()->kind() == c10::TypeKind::TensorType;
      if (tensor_out && (op == "aten::quantize_per_tensor" || op.rfind("quantized::", 0) == 0)) {
        values.push_back(n->output(0));
        out << "N\t" << ni << "\t" << op << "\n";
      } else if (tensor_out && n->kind() == c10::prim::CallMethod &&
                 n->s(c10::attr::name) == "forward") {
        torch::jit::Node* self = n->input(0)->node();
        if (self->kind() == c10::prim::GetAttr && self->input(0) == g->inputs()[0]) {
          values.push_back(n->output(0));
          out << "M\t" << self->s(c10::attr::name) << "\n";
        }
      }
      ++ni;
    }
    torch::jit::Node* tuple = g->createTuple(values);
    g->appendNode(tuple);
    g->eraseOutput(0);
    g->registerOutput(tuple->output());
    auto& fn = torch::jit::toGraphFunction(method.function());
    fn.setSchema(fn.getSchema().cloneWithReturns({c10::Argument("", tuple->output()->type())}));
    return dup(out.str());
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

// 0: per tensor, 1: per channel, -1: not a quantized tensor / another scheme.
int qpt_qscheme(const void* tensor) {
  try {
    const at::Tensor& t = *static_cast<const at::Tensor*>(tensor);
    if (!t.is_quantized()) return -1;
    switch (t.qscheme()) {
      case at::kPerTensorAffine:
      case at::kPerTensorSymmetric:
        return 0;
      case at::kPerChannelAffine:
      case at::kPerChannelSymmetric:
        return 1;
      default:
        return -1;
    }
  } catch (const std::exception&) {
    return -1;
  }
}

}  // extern "C"
