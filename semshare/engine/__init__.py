"""TensorRT engine building and the plugin library. Submodules import TensorRT lazily; importing this package is free."""
