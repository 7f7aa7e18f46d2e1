"""Examples built on icefeed; not part of the installed package."""
