"""The images components run in; names and the tag come from r1ov.k8s.bundle, defined once."""

from r1ov.k8s.bundle import image

BASE_IMAGE = image("base")  # data stages, registry, promotion: CPU
TRAIN_IMAGE = image("train")  # training launchers and trainers
VLLM_IMAGE = image("vllm")  # evaluation with the vLLM engine
DATA_IMAGE = image("data")  # formalization extras (OCR, detector weights)
