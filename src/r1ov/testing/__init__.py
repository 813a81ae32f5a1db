"""Offline stand-ins for tests and the local demo (a tiny random Qwen2.5-VL; see tiny_model).

The Kubernetes stand-in is :mod:`kube_api` (REST, RBAC, discovery, access reviews), with the rules it
follows from kube-apiserver in their own modules: :mod:`field_manager` (server-side apply),
:mod:`admission` and :mod:`pod_security` (what happens to a pod a controller creates), and
:mod:`kubelet` to run pods as local processes. :mod:`slow_link` puts a slow network link in front of
a local server (moto's S3).

Production code never imports this package; only the demo, the CLI's offline commands, the
benchmarks and the tests do.
"""
