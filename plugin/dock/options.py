"""Widgets for engine options, built from what the engine publishes (:mod:`..engine_options`).

Nothing here retypes an option: the widget kind, its choices, default, range and tooltip
come from the engine's own argparse declarations (``python -m engine options --json``),
and a combination the engine refuses (``default_only`` rules, e.g. a LoRA rank on a
backbone without attention) disables the widget with the rule's *why* as its tooltip.

Only what the user changed leaves the form (:meth:`OptionsForm.values`): everything else
is the engine's default, decided by the engine at run time (the automatic backbone, the
schedule adapted to the labelled area ...). Changed values are kept in ``QgsSettings``
under ``MaskTalk/options/<command>/<dest>``, per user.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from qgis.core import QgsSettings
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QSpinBox, QVBoxLayout, QWidget

from ..i18n import tr

SETTINGS_PREFIX = "MaskTalk/options/"
#: Largest value a spin box offers when the engine declares no maximum.
UNBOUNDED = 1_000_000


def _label(dest: str) -> str:
    """A row label for an option the dock has no words of its own for: the engine's name."""
    return dest.replace("_", " ").capitalize()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


class OptionWidget:
    """One option's widget: reads and writes the option's value (None = the engine's default)."""

    def __init__(self, option, default_text: str = "") -> None:
        self.option = option
        self.widget = self._make(option, default_text)

    # -- building --------------------------------------------------------------------------
    def _make(self, o, default_text: str):
        automatic = default_text or tr("automatic")
        if o.type == "bool":
            w = QCheckBox()
            w.setChecked(bool(o.default))
            return w
        if o.choices:
            w = QComboBox()
            if o.default is None:
                w.addItem(automatic, None)
            for choice in o.choices:
                text = str(choice) + (f" ({tr('default')})" if choice == o.default else "")
                w.addItem(text, choice)
            w.setCurrentIndex(max(0, w.findData(o.default)) if o.default is not None else 0)
            return w
        if o.type in ("int", "float"):
            is_int = o.type == "int"
            w = QSpinBox() if is_int else QDoubleSpinBox()
            lo = o.minimum if o.minimum is not None else 0
            hi = o.maximum if o.maximum is not None else UNBOUNDED
            if not is_int:
                magnitude = max(abs(v) for v in (hi if o.maximum is not None else 0, o.default or 0, 1e-9))
                step = 0.05 if magnitude <= 1 else (0.5 if magnitude <= 10 else 1.0)
                decimals = max(2, -int(math.floor(math.log10(abs(o.default)))) + 1) if isinstance(o.default, float) and 0 < abs(o.default) < 0.01 else 2
                w.setDecimals(min(decimals, 8))
                w.setSingleStep(step)
            else:
                step = 1
            if o.default is None:  # one step below the range means "the engine decides"
                w.setRange(lo - step, hi)
                w.setSpecialValueText(automatic)
                w.setValue(lo - step)
            else:
                w.setRange(min(lo, o.default), max(hi, o.default))
                w.setValue(o.default)
            return w
        if o.type == "path":
            w = QgsFileWidget()
            w.setStorageMode(QgsFileWidget.StorageMode.GetFile)
            w.lineEdit().setPlaceholderText(str(o.default) if o.default not in (None, "") else automatic)
            if o.default not in (None, ""):
                w.setFilePath(str(o.default))
            return w
        w = QLineEdit()
        w.setPlaceholderText(str(o.default) if o.default not in (None, "") else automatic)
        if o.default not in (None, ""):
            w.setText(str(o.default))
        return w

    def connect(self, slot) -> None:
        w = self.widget
        if isinstance(w, QCheckBox):
            w.toggled.connect(slot)
        elif isinstance(w, QComboBox):
            w.currentIndexChanged.connect(slot)
        elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
            w.valueChanged.connect(slot)
        elif isinstance(w, QgsFileWidget):
            w.fileChanged.connect(slot)
        else:
            w.textChanged.connect(slot)

    # -- values ----------------------------------------------------------------------------
    def value(self) -> Any:
        w, o = self.widget, self.option
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentData()
        if isinstance(w, (QSpinBox, QDoubleSpinBox)):
            if o.default is None and w.value() <= w.minimum():
                return None
            return int(w.value()) if isinstance(w, QSpinBox) else float(w.value())
        text = (w.filePath() if isinstance(w, QgsFileWidget) else w.text()).strip()
        return text or o.default  # an empty field is the engine's default

    def set_value(self, value: Any) -> bool:
        """Show ``value`` (None = the default); False when the widget cannot hold it."""
        w, o = self.widget, self.option
        if value is None:
            value = o.default
        try:
            if isinstance(w, QCheckBox):
                w.setChecked(value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes"))
            elif isinstance(w, QComboBox):
                i = w.findData(value)
                if i < 0 and value is not None:
                    i = w.findData(type(o.choices[0])(value)) if o.choices else -1
                if i < 0:
                    return False
                w.setCurrentIndex(i)
            elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                if value is None:
                    w.setValue(w.minimum())
                    return True
                number = int(value) if isinstance(w, QSpinBox) else float(value)
                if not (w.minimum() <= number <= w.maximum()) or (o.default is None and number <= w.minimum()):
                    return False
                w.setValue(number)
            elif isinstance(w, QgsFileWidget):
                w.setFilePath("" if value is None else str(value))
            else:
                w.setText("" if value is None else str(value))
        except (TypeError, ValueError):
            return False
        return True

    def is_default(self) -> bool:
        value, default = self.value(), self.option.default
        return value is None or _same(value, default) or (default is None and value in ("", False))


class OptionsForm(QWidget):
    """The widgets of some options of one engine command.

    Args:
        command: the engine command (``train``, ``predict``, ``caption``).
        main: dests shown in the main form, in this order.
        exclude: dests never shown (layers and paths the dock fills in itself, epochs ...).
        labels: dest -> the row's label (others: the dest in words).
        more: also show every other published option in a collapsed *More options* box.

    Signals:
        changed(): a value changed (the user's, or one the rules reset).
    """

    changed = pyqtSignal()

    def __init__(self, command: str, main: Sequence[str], exclude: Iterable[str] = (), labels: dict | None = None,
                 more: bool = True, parent=None) -> None:
        super().__init__(parent)
        self.command = command
        self.main = list(main)
        self.exclude = set(exclude)
        self.labels = dict(labels or {})
        self.more = more
        self.engine_options = None
        self.widgets: dict[str, OptionWidget] = {}
        self.tooltips: dict[str, str] = {}
        self.blocked: dict[str, str] = {}
        self._restoring = False
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._body: QWidget | None = None
        self.more_box: QgsCollapsibleGroupBox | None = None

    # -- building ----------------------------------------------------------------------------
    def set_engine_options(self, engine_options, default_texts: dict | None = None) -> None:
        """(Re)build the widgets from ``engine_options``; the user's values are kept."""
        kept = self.values() if self.widgets else self.stored()
        self.engine_options = engine_options
        if self._body is not None:
            self._layout.removeWidget(self._body)
            self._body.deleteLater()
        self.widgets.clear()
        self._body = QWidget(self)
        body = QVBoxLayout(self._body)
        body.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        body.addLayout(form)
        published = {o.dest: o for o in engine_options.options(self.command)}
        texts = dict(default_texts or {})
        for dest in self.main:
            if dest in published:
                form.addRow(self.labels.get(dest) or _label(dest), self._add(published[dest], texts.get(dest, "")))
        others = [o for o in published.values() if o.dest not in self.main and o.dest not in self.exclude
                  and o.flag is not None and not o.required]
        self.more_box = None
        if self.more and others:
            box = QgsCollapsibleGroupBox(tr("More options"), self._body)
            box.setObjectName(f"MaskTalkMore{self.command.capitalize()}")
            more_form = QFormLayout(box)
            more_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            for o in others:
                more_form.addRow(self.labels.get(o.dest) or _label(o.dest), self._add(o, texts.get(o.dest, "")))
            box.setCollapsed(True)
            body.addWidget(box)
            self.more_box = box
        self._layout.addWidget(self._body)
        self._restoring = True
        try:
            for dest, value in kept.items():
                if dest in self.widgets:
                    self.widgets[dest].set_value(value)
        finally:
            self._restoring = False
        self.apply_rules()

    def _add(self, option, default_text: str) -> QWidget:
        item = OptionWidget(option, default_text)
        widget = item.widget
        widget.setObjectName(f"MaskTalkOption_{self.command}_{option.dest}")
        tip = option.help or ""
        if option.flag:
            tip = f"{tip}\n({self.command} {option.flag})" if tip else f"({self.command} {option.flag})"
        self.tooltips[option.dest] = tip
        widget.setToolTip(tip)
        item.connect(lambda *_a, dest=option.dest: self._on_edited(dest))
        self.widgets[option.dest] = item
        return widget

    # -- values ------------------------------------------------------------------------------
    def widget(self, dest: str) -> QWidget:
        return self.widgets[dest].widget

    def value(self, dest: str) -> Any:
        """The value shown for ``dest`` (None = the engine's default), or None when not shown."""
        item = self.widgets.get(dest)
        return item.value() if item is not None else None

    def values(self) -> dict[str, Any]:
        """dest -> value for the options the user changed (and no rule pins to its default)."""
        return {dest: item.value() for dest, item in self.widgets.items()
                if not item.is_default() and dest not in self.blocked}

    def set_value(self, dest: str, value: Any) -> bool:
        item = self.widgets.get(dest)
        return item.set_value(value) if item is not None else False

    def reset(self) -> None:
        """Every option back to the engine's default."""
        for item in self.widgets.values():
            item.set_value(None)

    def problems(self, extra: dict | None = None) -> list[str]:
        """What the engine would refuse at these values (its rules' messages)."""
        if self.engine_options is None:
            return []
        return list(self.engine_options.problems(self.command, {**self.values(), **(extra or {})}))

    # -- rules -------------------------------------------------------------------------------
    def apply_rules(self) -> None:
        """Disable the options a rule pins to their default at the current values, with why."""
        if self.engine_options is None:
            return
        self.blocked = dict(self.engine_options.blocked(self.command, self.values_for_rules()))
        for dest, item in self.widgets.items():
            why = self.blocked.get(dest)
            if why is not None and not item.is_default():
                item.widget.blockSignals(True)
                item.set_value(None)
                item.widget.blockSignals(False)
            item.widget.setEnabled(why is None)
            item.widget.setToolTip(why if why is not None else self.tooltips.get(dest, ""))

    def values_for_rules(self) -> dict[str, Any]:
        return {dest: item.value() for dest, item in self.widgets.items() if not item.is_default()}

    def _on_edited(self, dest: str) -> None:
        if self._restoring:
            return
        self.apply_rules()
        self.store()
        self.changed.emit()

    # -- user settings -----------------------------------------------------------------------
    def _key(self, dest: str = "") -> str:
        return f"{SETTINGS_PREFIX}{self.command}/{dest}"

    def stored(self) -> dict[str, Any]:
        """The user's changed values of an earlier session (QgsSettings)."""
        s = QgsSettings()
        s.beginGroup(self._key().rstrip("/"))
        try:
            return {key: s.value(key) for key in s.childKeys()}
        finally:
            s.endGroup()

    def store(self) -> None:
        s = QgsSettings()
        s.remove(self._key().rstrip("/"))
        for dest, value in self.values().items():
            s.setValue(self._key(dest), value)
