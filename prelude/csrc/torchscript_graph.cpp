// The dataflow of a TorchScript module's root `forward` graph, for drawing it
// (prelude/src/quant/graph/torch.rs). A traced FX-quantized module calls its submodules (convs,
// pads, pools, the linear layer) and a few ops (quantize_per_tensor, dequantize, add_relu,
// permute, flatten) from the root graph; each submodule call is one operator there.
//
// qpt_graph lists, one line each (tab-separated; values are numbered by Value::unique()):
//   I  value  name                     a graph input (after `self`), named as in the schema
//   N  node  value  op  inputs         a node of the root graph with a tensor output; `node`
//                                      counts the graph's nodes that are not prim::Constant (as
//                                      qpt_describe numbers them), `inputs` the comma-separated
//                                      values of its tensor inputs
//   C  node  value  child  module  type  return_node  return_op  inputs
//                                      a call of direct submodule `child` (module index
//                                      `module` in named_modules order, class `type` without
//                                      its namespace); `return_node` is the node of the child's
//                                      forward graph that makes what it returns (-1: none)
//   O  value                           a graph output (the elements of a returned tuple)
// A submodule whose forward calls other modules is refused by name: only calls from the root
// are drawn.
//
// The string is malloc'ed (freed by qpt_free_string); errors go to `*err` likewise.

#include <torch/script.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

namespace {

char* malloc_copy(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

bool is_tensor(const torch::jit::Value* v) {
  return v->type()->kind() == c10::TypeKind::TensorType;
}

// The tensor inputs of `n` from index `first` on, as comma-separated value numbers.
std::string tensor_inputs(const torch::jit::Node* n, size_t first) {
  std::string out;
  for (size_t i = first; i < n->inputs().size(); ++i) {
    if (!is_tensor(n->input(i))) continue;
    if (!out.empty()) out += ",";
    out += std::to_string(n->input(i)->unique());
  }
  return out;
}

// The index of the node making `v` in `g`, counting nodes that are not constants; -1 when `v`
// is a graph input or a constant.
int64_t counted_index(const std::shared_ptr<torch::jit::Graph>& g, const torch::jit::Value* v) {
  int64_t i = 0;
  for (const torch::jit::Node* n : g->nodes()) {
    if (n->kind() == c10::prim::Constant) continue;
    if (n == v->node()) return i;
    ++i;
  }
  return -1;
}

}  // namespace

extern "C" {

char* qpt_graph(void* h, char** err) {
  try {
    const torch::jit::Module& root = *static_cast<torch::jit::Module*>(h);
    auto method = root.get_method("forward");
    auto g = method.graph();
    const auto& args = method.function().getSchema().arguments();
    std::ostringstream out;
    for (size_t i = 1; i < g->inputs().size(); ++i) {
      const torch::jit::Value* v = g->inputs()[i];
      if (!is_tensor(v)) continue;
      std::string name = i < args.size() ? args[i].name() : v->debugNameBase();
      out << "I\t" << v->unique() << "\t" << name << "\n";
    }
    int64_t ni = 0;
    for (const torch::jit::Node* n : g->nodes()) {
      if (n->kind() == c10::prim::Constant) continue;
      int64_t index = ni++;
      if (n->kind() == c10::prim::GetAttr || n->outputs().size() != 1 || !is_tensor(n->output(0)))
        continue;
      if (n->kind() != c10::prim::CallMethod) {
        out << "N\t" << index << "\t" << n->output(0)->unique() << "\t"
            << n->kind().toQualString() << "\t" << tensor_inputs(n, 0) << "\n";
        continue;
      }
      const torch::jit::Node* self = n->input(0)->node();
      if (n->s(c10::attr::name) != "forward" || self->kind() != c10::prim::GetAttr ||
          self->input(0) != g->inputs()[0])
        throw std::runtime_error("the root graph calls `" + n->s(c10::attr::name) +
                                 "` of something that is not a direct submodule");
      std::string child = self->s(c10::attr::name);
      int64_t module = -1, mi = 0;
      for (const auto& nm : root.named_modules()) {
        if (nm.name == child) module = mi;
        ++mi;
      }
      torch::jit::Module sub = root.attr(child).toModule();
      auto sg = sub.get_method("forward").graph();
      for (const torch::jit::Node* s : sg->nodes())
        if (s->kind() == c10::prim::CallMethod)
          throw std::runtime_error("submodule `" + child +
                                   "` calls other modules in its forward; only modules called "
                                   "from the root's forward are drawn");
      const torch::jit::Value* ret = sg->outputs()[0];
      int64_t ret_node = counted_index(sg, ret);
      std::string ret_op = ret_node < 0 ? "-" : ret->node()->kind().toQualString();
      std::string type = sub.type()->name() ? sub.type()->name()->name() : child;
      out << "C\t" << index << "\t" << n->output(0)->unique() << "\t" << child << "\t" << module
          << "\t" << type << "\t" << ret_node << "\t" << ret_op << "\t" << tensor_inputs(n, 1)
          << "\n";
    }
    for (const torch::jit::Value* v : g->outputs()) {
      if (v->node()->kind() == c10::prim::TupleConstruct) {
        for (const torch::jit::Value* e : v->node()->inputs())
          if (is_tensor(e)) out << "O\t" << e->unique() << "\n";
      } else if (is_tensor(v)) {
        out << "O\t" << v->unique() << "\n";
      }
    }
    return malloc_copy(out.str());
  } catch (const std::exception& e) {
    *err = malloc_copy(e.what());
    return nullptr;
  }
}

}  // extern "C"
