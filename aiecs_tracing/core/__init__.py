"""The core: configuration, the manager, spans, decorators, propagation, sampling, export."""
