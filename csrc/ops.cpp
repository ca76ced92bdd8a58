// Schemas of the kernel-level ops of alae_fast._C, and the Python module stub.
//
// These ops are the raw kernels (one forward, one backward per fused op). The public,
// differentiable ops with fake implementations and impl dispatch are defined in Python
// (alae_fast/ops/), which call these when impl="cpu" or impl="cuda". Keeping the public
// schemas in Python lets the package work when this extension was not built.
#include <Python.h>

#include <torch/library.h>

extern "C" {
// `import alae_fast._C` loads this library, which runs the TORCH_LIBRARY registrations.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "alae_fast kernels, exposed as torch.ops.alae_fast_C", -1,
      nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(alae_fast_C, m) {
  m.def("d_adv_loss_fwd(Tensor d_fake, Tensor d_real) -> Tensor");
  m.def("d_adv_loss_bwd(Tensor grad, Tensor d_fake, Tensor d_real) -> (Tensor, Tensor)");
  m.def("g_adv_loss_fwd(Tensor d_fake) -> Tensor");
  m.def("g_adv_loss_bwd(Tensor grad, Tensor d_fake) -> Tensor");
  m.def("r1_penalty_fwd(Tensor grads, float gamma) -> Tensor");
  m.def("r1_penalty_bwd(Tensor grad, Tensor grads, float gamma) -> Tensor");
  m.def("latent_l2_fwd(Tensor a, Tensor b) -> Tensor");
  m.def("latent_l2_bwd(Tensor grad, Tensor a, Tensor b) -> (Tensor, Tensor)");
  // Layer ops of the StyleALAE blocks.
  m.def("bias_act_fwd(Tensor x, Tensor? b, float alpha, float gain) -> Tensor");
  m.def("bias_act_bwd(Tensor grad, Tensor y, float alpha, float gain) -> (Tensor, Tensor)");
  m.def("blur_fwd(Tensor x) -> Tensor");
  m.def("encode_norm_fwd(Tensor x, Tensor bias, float alpha, float eps) -> (Tensor, Tensor, Tensor)");
  m.def(
      "encode_norm_bwd(Tensor grad_y, Tensor grad_style, Tensor x, Tensor bias, Tensor stats, "
      "float alpha, float eps) -> (Tensor, Tensor)");
  m.def(
      "adain_fwd(Tensor x, Tensor style, Tensor? noise, Tensor? noise_weight, Tensor? bias, "
      "float alpha, float eps) -> (Tensor, Tensor)");
  m.def(
      "adain_bwd(Tensor grad_y, Tensor x, Tensor style, Tensor? noise, Tensor? noise_weight, "
      "Tensor? bias, Tensor stats, float alpha, float eps) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "adain_conv2d_fwd(Tensor x, Tensor scale, Tensor shift, Tensor? center, Tensor weight, "
      "Tensor? bias, Tensor? noise, Tensor? noise_weight, Tensor? act_bias, float alpha, "
      "bool up) -> Tensor");
  m.def(
      "adain_conv2d_bwd(Tensor grad_out, Tensor x, Tensor scale, Tensor shift, Tensor? center, "
      "Tensor weight, Tensor? noise, Tensor? noise_weight, Tensor? act_bias, float alpha, "
      "bool up) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "adain_stats_fwd(Tensor x, Tensor? noise, Tensor? noise_weight, Tensor? act_bias, "
      "float alpha, float eps) -> Tensor");
  m.def("linear_act_fwd(Tensor x, Tensor weight, Tensor? bias, float alpha, float gain) -> Tensor");
  m.def(
      "lreq_adam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avg_sqs, "
      "float[] step_sizes, float beta2, float eps, float weight_decay) -> ()");
}
