"""The report's five sections, one module each: its ``_section_<name>(ctx, sec)`` fills the page's
:class:`~analysis.report.markup._Section` from the sources in :class:`~analysis.report.data._Context`."""
