"""`nextbest report`: the marketers' report, one self-contained HTML page.

:func:`write_report` writes ``<reports_dir>/report.html`` and logs it to
MLflow as an artifact of a run named ``report-<timestamp>`` (tag
``kind=report``). The page has five sections, one module each in
:mod:`analysis.report.sections`:

1. **The base** - customers by lifecycle stage and segment at the latest
   feature snapshot, and the movement over about a month.
2. **The models** - for each head, the ``@champion`` version: what it predicts,
   its quality beside the simple baseline and the oracle, gains, calibration
   (hour accuracy for send time), top drivers, and the previous version.
3. **Channels** - click rate per channel and segment, reachable share per
   channel, and engagement by local hour and weekday.
4. **The policy's what-if** on the current base: action x channel mix, contact
   pressure against the caps, why customers get nothing, expected value against
   no action and against the calendar campaigns.
5. **Control group and uplift** - treated vs control purchase rate with a 95%
   confidence interval and the incremental value, for the legacy campaigns and
   for the service's logged decisions.

A section whose source is missing says so in the page; one that fails is shown
as an error box (and logged) instead of failing the whole report.

The other modules, one job each: :mod:`~analysis.report.data` reads the
sources, :mod:`~analysis.report.text` puts names and numbers into words,
:mod:`~analysis.report.markup` builds the HTML blocks,
:mod:`~analysis.report.charts` draws the charts, and
:mod:`~analysis.report.page` assembles, writes and logs the page.
"""

from analysis.report.page import write_report
from analysis.report.text import action_text, feature_text

__all__ = ["action_text", "feature_text", "write_report"]
