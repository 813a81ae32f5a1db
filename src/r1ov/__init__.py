"""r1ov: R1-Onevision reproduced as a Kubeflow/Kubernetes MLOps bundle."""

__version__ = "0.1.0"
