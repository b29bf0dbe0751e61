"""The Twisted services of :mod:`txetcd.service`, one module each; that module re-exports them."""
