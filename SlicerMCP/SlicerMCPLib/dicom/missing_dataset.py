"""Requests whose data set was announced but never sent get an answer, not silence until a timeout.

pynetdicom as an SCU encodes an empty identifier (`send_c_find(Dataset(), ...)`, an empty N-CREATE
attribute list) as zero bytes but still flags the command "data set present" (CommandDataSetType
0x0001: `DIMSEMessage.primitive_to_message` tests the BytesIO, which is always true) and then sends
no data set fragment (`encode_msg` skips an empty one). The SCP's DIMSE decoder waits for that
fragment until the network timeout aborts the association: the modality sees no status and
nothing says why. dcmtk refuses to send an empty data set at all ("dataset is empty").

`MissingDataSetWatch` notes when each association last received a PDU. A request that has its
whole command, announces a data set and has received no PDU for `grace_s` is completed with an
empty last data set fragment, so it reaches the service's handler through pynetdicom's normal path
with an empty data set, and the handler answers with a failure status. A peer always sends the
data set right after the command, so `grace_s` (seconds) is far above any real gap.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from pynetdicom import evt
from pynetdicom.pdu_primitives import P_DATA

log = logging.getLogger(__name__)

NO_DATA_SET = 0x0101  # (0000,0800) CommandDataSetType: no data set follows
LAST_DATA_FRAGMENT = b"\x02"  # PS3.8 E.2 message control header: data set, last fragment
DEFAULT_GRACE_S = 2.0


class MissingDataSetWatch:
    """Bind `handlers` on the AE's server; `start(ae)` watches its associations until `stop()`."""

    def __init__(self, grace_s: float = DEFAULT_GRACE_S, poll_s: float = 0.25):
        self.grace_s = grace_s
        self.poll_s = poll_s
        self._last_pdu: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def handlers(self) -> list[tuple[Any, Any]]:
        return [(evt.EVT_PDU_RECV, self._on_pdu)]

    def _on_pdu(self, event: Any) -> None:
        with self._lock:  # also held while completing a request: a late PDU waits, then is decoded as usual
            self._last_pdu[event.assoc] = time.monotonic()

    def start(self, ae: Any) -> MissingDataSetWatch:
        self._thread = threading.Thread(
            target=self._watch, args=(ae,), name="dimse-dataset-watch", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * self.poll_s + 1)

    def _watch(self, ae: Any) -> None:
        while not self._stop.wait(self.poll_s):
            for assoc in list(ae.active_associations):
                try:
                    self._complete_if_stalled(assoc)
                except Exception:  # one odd association must not end the watch for all
                    log.exception("DIMSE data set watch: checking an association failed")

    def _complete_if_stalled(self, assoc: Any) -> None:
        with self._lock:
            last = self._last_pdu.get(assoc)
            if last is None or time.monotonic() - last < self.grace_s:
                return
            message = getattr(assoc.dimse, "message", None)
            command = getattr(message, "command_set", None)
            if command is None or command.get("CommandDataSetType", NO_DATA_SET) == NO_DATA_SET:
                return
            # (a C-STORE received into a file, pynetdicom's STORE_RECV_CHUNKED_DATASET, keeps no BytesIO)
            if (
                message.data_set is None
                or message.data_set.tell()
                or getattr(message, "_data_set_file", None)
            ):
                return  # part of a data set arrived: a slow peer, left to the network timeout
            log.debug(
                "DICOM request %#06x from %s announced a data set but sent none for %.0f s: "
                "handled as an empty data set",
                int(command.get("CommandField", 0)),
                assoc.requestor.ae_title,
                self.grace_s,
            )
            primitive = P_DATA()
            primitive.presentation_data_value_list = [[int(message.context_id), LAST_DATA_FRAGMENT]]
            assoc.dimse.receive_primitive(primitive)
            self._last_pdu[assoc] = time.monotonic()
