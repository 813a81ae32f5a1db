# Builds every r1ov image with one tag. Run from the repository root:
#   docker buildx bake -f images/docker-bake.hcl            # all images, tag = package version
#   docker buildx bake -f images/docker-bake.hcl --push     # and push them
#   TAG=0.1.1 REGISTRY=registry.example.com/r1ov docker buildx bake -f images/docker-bake.hcl train
#   GIT_COMMIT=$(git rev-parse HEAD) docker buildx bake -f images/docker-bake.hcl   # label + env of the commit
# TAG must equal r1ov.__version__ and REGISTRY r1ov.k8s.bundle.REGISTRY: components, charts and this
# file name the same images (tests/test_images.py checks).

variable "REGISTRY" {
  default = "ghcr.io/r1ov"
}

variable "TAG" {
  default = "0.1.0"
}

# The commit the images are built from (org.opencontainers.image.revision and R1OV_GIT_COMMIT).
variable "GIT_COMMIT" {
  default = "unknown"
}

group "default" {
  targets = ["base", "train", "vllm", "data"]
}

# Shared by all targets: the repository root is the build context.
target "_common" {
  context   = "."
  platforms = ["linux/amd64"]
  args = {
    R1OV_VERSION = "${TAG}"
    GIT_COMMIT   = "${GIT_COMMIT}"
  }
}

target "base" {
  inherits   = ["_common"]
  dockerfile = "images/Dockerfile.base"
  tags       = ["${REGISTRY}/r1ov:${TAG}"]
}

target "train" {
  inherits   = ["_common"]
  dockerfile = "images/Dockerfile.train"
  tags       = ["${REGISTRY}/r1ov-train:${TAG}"]
}

target "vllm" {
  inherits   = ["_common"]
  dockerfile = "images/Dockerfile.vllm"
  tags       = ["${REGISTRY}/r1ov-vllm:${TAG}"]
}

# Built on the base target of the same run (a named build context), not on a pulled image.
target "data" {
  inherits   = ["_common"]
  dockerfile = "images/Dockerfile.data"
  tags       = ["${REGISTRY}/r1ov-data:${TAG}"]
  contexts = {
    r1ov-base = "target:base"
  }
  args = {
    R1OV_VERSION = "${TAG}"
    GIT_COMMIT   = "${GIT_COMMIT}"
    BASE_IMAGE   = "r1ov-base"
  }
}
