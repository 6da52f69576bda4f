// A small C interface to the parts of libtorch's TorchScript API that tch does not expose,
// for the quantization workbench (prelude/src/quant/torch_script.rs):
//   - load a module from bytes, save it to bytes, run its `forward`;
//   - list its quantized weights (the `_packed_params` objects of quantized conv/linear
//     modules) and the scale / zero-point operands of quantize ops (graph constants or module
//     attributes) in each module's `forward` graph;
//   - unpack / repack a weight through the dispatcher's boxed calls (no private ATen headers);
//   - make an edited version of a module in memory (`fork`, below): a new scale or zero-point
//     operand (a new graph constant, or a new attribute value), a repacked weight, or a `forward`
//     that also returns the quantized intermediate tensors (capture).
// A handle is never changed after the call that made it returns: every edit returns a new
// handle and leaves its input, and every module it shares objects or code with, as it was.
// Every function catches exceptions and reports them as a malloc'ed message in `*err`.

#include <torch/script.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using torch::jit::Module;

char* dup(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

Module& root_of(void* h) { return *static_cast<Module*>(h); }

std::vector<torch::jit::NameModule> modules(const Module& m) {
  std::vector<torch::jit::NameModule> all;
  for (const auto& nm : m.named_modules()) all.push_back(nm);
  return all;
}

torch::jit::NameModule named_module_at(const Module& m, int64_t index) {
  auto all = modules(m);
  if (index < 0 || index >= static_cast<int64_t>(all.size()))
    throw std::runtime_error("module index out of range");
  return all[index];
}

Module module_at(const Module& m, int64_t index) { return named_module_at(m, index).value; }

// Node indices count the nodes of a graph that are not prim::Constant, so that a constant
// inserted by an edit moves no other node's index (and a saved and reloaded module, whose
// constants may be pooled differently, numbers its nodes the same way).
bool counted(const torch::jit::Node* n) { return n->kind() != c10::prim::Constant; }

torch::jit::Node* node_at(const std::shared_ptr<torch::jit::Graph>& g, int64_t ni) {
  int64_t i = 0;
  for (torch::jit::Node* n : g->nodes()) {
    if (!counted(n)) continue;
    if (i++ == ni) return n;
  }
  throw std::runtime_error("node index out of range");
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
bool operand(const Module& owner, const std::shared_ptr<torch::jit::Graph>& g,
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

// ---- Versions in memory -------------------------------------------------------------------
//
// A module is a tree of objects (ivalue::Object: a class type and attribute slots); its code
// lives in the class types (one GraphFunction per method, each with its own graph executor),
// which a compilation unit owns. Objects of one type share its graphs and executors, and a
// caller's graph names the exact types of the submodules it calls (prim::CallMethod is bound to
// the callee's type when the caller's code is compiled, and the executor inlines the callee's
// graph into the caller's). So:
//   - a new attribute value (a packed weight, a scale buffer) needs new objects from the root
//     down to the module that holds it (shallow copies: same types, same slots), and nothing
//     else: every other object, and all code, is shared with the parent, whose executors are
//     already compiled;
//   - a new graph constant needs, in addition, new types for those same modules (their methods
//     copied with the types of the path remapped, as Module::clone_method does), owned by a new
//     compilation unit that only the new objects reference, so that it is freed with the version.
//     (Module::clone would copy every type and method, run each module's __setstate__ — which
//     repacks every weight — and register all of it in the original compilation unit, where it
//     stays for as long as any module of that load lives: about 3 MiB per version.)
// Objects and types are never changed after the call that made them returns.

// The name of a type made for a version: its own name with `___qplay_<token>` as the last
// namespace (an earlier `___qplay_` namespace is dropped). The token comes from the version's
// key, so names are unique within any module tree the workbench makes, and the same edits give
// the same names (and the same saved bytes).
c10::QualifiedName fresh_name(const c10::QualifiedName& name, const std::string& token) {
  const auto& all = name.atoms();
  std::vector<std::string> atoms;
  for (size_t i = 0; i + 1 < all.size(); ++i)
    if (all[i].rfind("___qplay_", 0) != 0) atoms.push_back(all[i]);
  atoms.push_back("___qplay_" + token);
  atoms.push_back(all.back());
  return c10::QualifiedName(atoms);
}

// A copy of `orig` (same slots) whose attribute `child_name` is `child`, when `child` is given.
// With `cu`, the copy gets a new type in `cu`: the same attributes (the child's typed as the new
// child's), constants and methods (copied, with the types of the new objects remapped).
Module copy_module(const Module& orig, const std::string& child_name, const Module* child,
                   const std::shared_ptr<torch::jit::CompilationUnit>& cu,
                   const std::string& token) {
  if (!cu) {
    Module r = orig.copy();
    if (child) r._ivalue()->setAttr(child_name, child->_ivalue());
    return r;
  }
  auto t = orig.type();
  if (!t->getForwardHooks().empty() || !t->getForwardPreHooks().empty() ||
      !t->properties().empty())
    throw std::runtime_error("module type " + t->repr_str() +
                             " has hooks or properties, which an edit cannot copy");
  Module r(fresh_name(*t->name(), token), cu, /*shouldMangle=*/false);
  for (size_t i = 0; i < t->numAttributes(); ++i) {
    const std::string& name = t->getAttributeName(i);
    c10::TypePtr type = t->getAttribute(i);
    c10::IValue value = orig._ivalue()->getSlot(i);
    if (child && name == child_name) {
      type = child->type();
      value = child->_ivalue();
    }
    r.type()->addAttribute(name, type, t->is_parameter(i), t->is_buffer(i));
    r._ivalue()->setSlot(i, std::move(value));
  }
  for (size_t i = 0; i < t->numConstants(); ++i)
    r.type()->addConstant(t->getConstantName(i), t->getConstant(i));
  // clone_method maps the type of every module under `orig` to the type of the module at the
  // same place under `r` (new types on the path, the same types elsewhere).
  for (torch::jit::Function* fn : t->methods()) r.clone_method(orig, fn->name());
  return r;
}

// A new root whose module `mi` and its ancestors are new objects (with new types in a new
// compilation unit when `retype`); everything else is shared with `root`.
Module fork(const Module& root, int64_t mi, bool retype, const std::string& token) {
  std::string name = named_module_at(root, mi).name;
  std::vector<std::string> path;
  for (size_t start = 0; !name.empty();) {
    size_t dot = name.find('.', start);
    path.push_back(name.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  std::vector<Module> chain{root};
  for (const auto& p : path) chain.push_back(chain.back().attr(p).toModule());
  auto cu = retype ? std::make_shared<torch::jit::CompilationUnit>() : nullptr;
  Module cur = copy_module(chain.back(), "", nullptr, cu, token);
  for (size_t i = path.size(); i-- > 0;) cur = copy_module(chain[i], path[i], &cur, cu, token);
  return cur;
}

void* handle_for(Module m) { return new Module(std::move(m)); }

}  // namespace

extern "C" {

void qpt_free_string(char* s) { std::free(s); }

void* qpt_load(const uint8_t* data, size_t len, char** err) {
  try {
    std::string bytes(reinterpret_cast<const char*>(data), len);
    std::istringstream in(bytes);
    auto* m = new Module(torch::jit::load(in, c10::Device(c10::kCPU)));
    m->eval();
    return m;
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

void qpt_free(void* h) { delete static_cast<Module*>(h); }

// One line per quantized weight and per quantize operand pair (tab-separated):
//   W  module_index  module_name  conv2d|linear
//   A  module_index  module_name  node_index  op  scale_input  scale_source  scale
//      zp_input  zp_source  zero_point  output_name  dtype (ScalarType code, -1 unknown)
char* qpt_describe(void* h, char** err) {
  try {
    const Module& root = root_of(h);
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
        if (!counted(n)) continue;
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
    auto m = module_at(root_of(h), mi);
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

// A new version whose module `mi` has its weight packed from `weight` (a quantized tensor),
// keeping its bias and its convolution settings.
void* qpt_with_weight(void* h, int64_t mi, const void* weight, char** err) {
  try {
    std::string kind;
    auto packed = module_at(root_of(h), mi).attr("_packed_params");
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
    Module root = fork(root_of(h), mi, /*retype=*/false, "");
    module_at(root, mi).setattr("_packed_params", fresh);
    return handle_for(std::move(root));
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

// A new version whose operand `input` of node `ni` in module `mi`'s forward graph is `value`: a
// new graph constant (float, or int when `is_int`) where it was a constant (the module and its
// ancestors get new types named with `token`), else a new value of the module attribute it was
// read from (same type; a tensor keeps its dtype).
void* qpt_with_operand(void* h, int64_t mi, int64_t ni, int64_t input, double value, int is_int,
                       const char* token, char** err) {
  try {
    auto g = module_at(root_of(h), mi).get_method("forward").graph();
    torch::jit::Node* n = node_at(g, ni);
    if (input < 0 || input >= static_cast<int64_t>(n->inputs().size()))
      throw std::runtime_error("operand index out of range");
    torch::jit::Node* p = n->input(input)->node();
    if (p->kind() == c10::prim::Constant) {
      Module root = fork(root_of(h), mi, /*retype=*/true, token);
      auto graph = module_at(root, mi).get_method("forward").graph();
      torch::jit::Node* node = node_at(graph, ni);
      torch::jit::WithInsertPoint guard(node);
      c10::IValue iv = is_int ? c10::IValue(static_cast<int64_t>(value)) : c10::IValue(value);
      node->replaceInput(input, graph->insertConstant(iv));
      return handle_for(std::move(root));
    }
    if (p->kind() == c10::prim::GetAttr && p->input(0) == g->inputs()[0]) {
      std::string name = p->s(c10::attr::name);
      Module root = fork(root_of(h), mi, /*retype=*/false, "");
      Module m = module_at(root, mi);
      auto old = m.attr(name);
      if (old.isTensor()) {
        auto t = old.toTensor();
        m.setattr(name, at::full(t.sizes(), value, t.options()));
      } else if (old.isInt()) {
        m.setattr(name, static_cast<int64_t>(value));
      } else {
        m.setattr(name, value);
      }
      return handle_for(std::move(root));
    }
    throw std::runtime_error("operand is neither a constant nor a module attribute");
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

uint8_t* qpt_save(void* h, size_t* len, char** err) {
  try {
    std::ostringstream out;
    root_of(h).save(out);
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

// Runs `forward` on one tensor without autograd. Returns a malloc'ed array of `*count` new
// at::Tensor objects: the output, or each element of an output tuple (null where an element is
// not a tensor). Null with `*err` set on failure.
void** qpt_forward(void* h, const void* input, size_t* count, char** err) {
  try {
    torch::NoGradGuard no_grad;
    const at::Tensor& x = *static_cast<const at::Tensor*>(input);
    c10::IValue out = root_of(h).forward({x});
    std::vector<c10::IValue> items;
    if (out.isTuple()) {
      for (const auto& item : out.toTupleRef().elements()) items.push_back(item);
    } else {
      items.push_back(out);
    }
    auto** tensors = static_cast<void**>(std::malloc(sizeof(void*) * items.size()));
    for (size_t i = 0; i < items.size(); ++i)
      tensors[i] = items[i].isTensor() ? new at::Tensor(items[i].toTensor()) : nullptr;
    *count = items.size();
    return tensors;
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

void qpt_free_array(void** a) { std::free(a); }

// A new version whose root `forward` returns a tuple: its output, then every tensor of the root
// graph that a quantized op, a quantize_per_tensor or a direct submodule's forward produces (the
// root gets a new type named with `token`). `*listing` gets one line per added element
// (tab-separated): `N  node_index  op` for an op of the root graph (node indices as
// qpt_describe counts them), `M  child_name` for a submodule call.
void* qpt_expose_activations(void* h, const char* token, char** listing, char** err) {
  try {
    Module root = fork(root_of(h), 0, /*retype=*/true, token);
    auto method = root.get_method("forward");
    auto g = method.graph();
    std::ostringstream out;
    std::vector<torch::jit::Value*> values{g->outputs()[0]};
    int64_t ni = 0;
    for (torch::jit::Node* n : g->nodes()) {
      if (!counted(n)) continue;
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
    *listing = dup(out.str());
    return handle_for(std::move(root));
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
