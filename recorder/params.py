"""Parameters, "others", HTML and tags: the ``comet_ml`` calls that describe a run.

Names and value conversions follow ``comet_ml`` 3.58.8 (see :mod:`comet_journal.recorder.compat`);
with ``strict=True`` values are checked by :mod:`comet_journal.recorder.validation` instead.
"""

from __future__ import annotations

import html as html_text
from typing import Any

from comet_journal.recorder import compat
from comet_journal.recorder import validation as check
from comet_journal.recorder.tolerance import tolerant


class ParamsMixin:
    """Part of :class:`comet_journal.recorder.Experiment`."""

    def _param_value(self, method: str, value: Any) -> Any:
        if self._refusals.strict:
            return check.param_value(method, value)
        return compat.param_value(value)

    def _other_value(self, method: str, value: Any) -> Any:
        if self._refusals.strict:
            return check.scalar(method, "value", value)
        return compat.other_value(value)

    def _dict_key(self, method: str, key: Any) -> str:
        return check.name(method, "key", key if self._refusals.strict else compat.name_text(key))

    @tolerant
    def log_parameter(self, name: Any, value: Any, step: Any = None) -> None:
        """Log one hyperparameter; ``step`` defaults to the current step (as the SDK)."""
        method = "log_parameter"
        check.name(method, "name", name)
        step = self._current_step(check.step(method, "step", step))
        self._record("log_parameter", {
            "parameterName": name, "parameterValue": self._param_value(method, value),
            "step": step})

    @tolerant
    def log_parameters(self, parameters: Any, prefix: str | None = None, step: Any = None,
                       nested_support: bool = True) -> None:
        """Log several parameters: ``prefix_name``; nested dicts become ``outer|inner``."""
        method = "log_parameters"
        check.mapping(method, "parameters", parameters)
        check.optional_str(method, "prefix", prefix)
        check.boolean(method, "nested_support", nested_support)
        step = self._current_step(check.step(method, "step", step))
        if nested_support:
            items = list(compat.flatten(parameters, prefix, compat.PARAM_PREFIX_SEP,
                                        compat.PARAM_NEST_SEP))
        else:
            items = [(f"{prefix}{compat.PARAM_PREFIX_SEP}{compat.name_text(k)}" if prefix
                      else compat.name_text(k), v) for k, v in parameters.items()]
        # Everything is converted before anything is journaled: a refused call journals nothing.
        # Sorted by name, as the SDK sends them.
        payloads = [{"parameterName": check.name(method, "key", name),
                     "parameterValue": self._param_value(method, value), "step": step}
                    for name, value in sorted(items, key=lambda item: item[0])]
        if nested_support and compat.has_nested(parameters):
            self._record("log_other", {"key": "hasNestedParams", "value": True})
        for payload in payloads:
            self._record("log_parameter", payload)

    @tolerant
    def log_other(self, key: Any, value: Any) -> None:
        method = "log_other"
        self._record("log_other", {"key": self._dict_key(method, key),
                                   "value": self._other_value(method, value)})

    @tolerant
    def log_others(self, dictionary: Any) -> None:
        method = "log_others"
        check.mapping(method, "dictionary", dictionary)
        items = [(self._dict_key(method, k), self._other_value(method, v))
                 for k, v in dictionary.items()]
        for key, value in items:
            self._record("log_other", {"key": key, "value": value})

    @tolerant
    def log_html(self, html: Any, clear: bool = False) -> None:
        """Append to the experiment's HTML, or replace it with ``clear=True``."""
        if not isinstance(html, str):
            raise check.type_error("log_html", "html", "a string", html)
        self._record("log_html", {"html": html,
                                  "override": check.boolean("log_html", "clear", clear)})

    @tolerant
    def log_html_url(self, url: Any, text: Any = None, label: Any = None) -> None:
        """Append a link to the HTML tab (the SDK's markup; url and text are escaped)."""
        method = "log_html_url"
        check.name(method, "url", url)
        check.optional_str(method, "text", text)
        check.optional_str(method, "label", label)
        link = '<a href="%s" target="_blank">%s</a>' % (
            html_text.escape(url), html_text.escape(url if text is None else text))
        body = f"<b>{html_text.escape(label)}</b>: {link}" if label else link
        self._record("log_html", {"html": f"<div>{body}</div>", "override": False})

    @tolerant
    def add_tag(self, tag: Any) -> None:
        self.add_tags([check.name("add_tag", "tag", tag)])

    @tolerant
    def add_tags(self, tags: Any) -> None:
        tags = check.string_list("add_tags", "tags", tags)
        if tags:
            self._record("add_tags", {"addedTags": tags})
            self._tags.extend(t for t in tags if t not in self._tags)

    def get_tags(self) -> list[str]:
        """The tags added by this process (in the order they were first added)."""
        return list(self._tags)
