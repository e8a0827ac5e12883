"""The backward-model builder: rule base classes, the registry, native rules, the cloner."""
