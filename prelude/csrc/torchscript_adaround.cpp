// What AdaRound needs from a quantized TorchScript module beyond torchscript.cpp's shim: the
// input of every packed-weight layer, as the quantized model computes it, and each layer's
// convolution settings (prelude/src/quant/adaround/torch.rs).
//
// A quantized conv/linear module's own graph is one quantized op on its input and its packed
// weight, so the input of the layer is the argument the root graph passes to the module's
// `forward`. The capture made here is the one of qpt_expose_activations (a version whose root
// has a new type, in a compilation unit of its own), with the returned tuple replaced before the
// handle is returned: the model output, then those arguments.

#include <torch/script.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdlib>
#include <cstring>  // strdup: malloc'ed, as the shim's strings are
#include <sstream>
#include <string>
#include <vector>

extern "C" {
void* qpt_expose_activations(void* h, const char* token, char** listing, char** err);
void qpt_free(void* h);
}

namespace {

using torch::jit::Module;

// The packed weight of a quantized module: its `_packed_params`, or (a quantized Linear) the
// `_packed_params` of its `_packed_params` submodule. `*kind`: "conv2d" or "linear".
bool packed_weight(const Module& m, c10::IValue* packed, std::string* kind) {
  if (!m.hasattr("_packed_params")) return false;
  c10::IValue v = m.attr("_packed_params");
  if (v.isModule()) {
    Module inner = v.toModule();
    if (!inner.hasattr("_packed_params")) return false;
    v = inner.attr("_packed_params");
  }
  if (!v.isObject() && !v.isCustomClass()) return false;
  const std::string type = v.type()->str();
  if (type.find("Conv2dPackedParamsBase") != std::string::npos) *kind = "conv2d";
  else if (type.find("LinearPackedParamsBase") != std::string::npos) *kind = "linear";
  else return false;
  *packed = v;
  return true;
}

// One of the packed conv weight's settings (`quantized::conv2d_<what>`), as integers.
std::vector<int64_t> conv_setting(const c10::IValue& packed, const std::string& what) {
  auto op = c10::Dispatcher::singleton().findSchemaOrThrow(("quantized::conv2d_" + what).c_str(),
                                                            "");
  torch::jit::Stack stack{packed};
  op.callBoxed(&stack);
  if (stack[0].isInt()) return {stack[0].toInt()};
  return stack[0].toIntVector();
}

}  // namespace

extern "C" {

// A new version whose root `forward` returns a tuple: its output, then, for every call in the
// root graph of a direct submodule that holds a packed weight, the tensor passed to it (the root
// gets a new type named with `token`). `*listing` gets one line per added element
// (tab-separated): `linear  child_name`, or `conv2d  child_name  stride  padding  dilation
// groups` with each setting's values comma-separated.
void* qpt_expose_weight_inputs(void* h, const char* token, char** listing, char** err) {
  char* activations = nullptr;
  void* handle = qpt_expose_activations(h, token, &activations, err);
  if (!handle) return nullptr;
  std::free(activations);
  try {
    Module& root = *static_cast<Module*>(handle);
    auto method = root.get_method("forward");
    auto g = method.graph();
    torch::jit::Node* exposed = g->outputs()[0]->node();
    if (exposed->kind() != c10::prim::TupleConstruct)
      throw std::runtime_error("the capture graph does not return a tuple");
    std::vector<torch::jit::Value*> values{exposed->input(0)};
    std::ostringstream out;
    for (torch::jit::Node* n : g->nodes()) {
      if (n->kind() != c10::prim::CallMethod || n->s(c10::attr::name) != "forward" ||
          n->inputs().size() != 2)
        continue;
      torch::jit::Node* self = n->input(0)->node();
      if (self->kind() != c10::prim::GetAttr || self->input(0) != g->inputs()[0]) continue;
      const std::string child = self->s(c10::attr::name);
      c10::IValue packed;
      std::string kind;
      if (!packed_weight(root.attr(child).toModule(), &packed, &kind)) continue;
      values.push_back(n->input(1));
      out << kind << "\t" << child;
      if (kind == "conv2d") {
        for (const char* what : {"stride", "padding", "dilation", "groups"}) {
          out << "\t";
          const char* sep = "";
          for (int64_t x : conv_setting(packed, what)) {
            out << sep << x;
            sep = ",";
          }
        }
      }
      out << "\n";
    }
    torch::jit::Node* tuple = g->createTuple(values);
    g->appendNode(tuple);
    g->eraseOutput(0);
    g->registerOutput(tuple->output());
    exposed->destroy();
    auto& fn = torch::jit::toGraphFunction(method.function());
    fn.setSchema(fn.getSchema().cloneWithReturns({c10::Argument("", tuple->output()->type())}));
    *listing = strdup(out.str().c_str());
    return handle;
  } catch (const std::exception& e) {
    qpt_free(handle);
    *err = strdup(e.what());
    return nullptr;
  }
}

}  // extern "C"
