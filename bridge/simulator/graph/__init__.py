"""A local fake of Meta's Graph API, as far as the WhatsApp Cloud API goes.

The real Graph API cannot be reached from the test machines, so the tests point the
bridge's ``graph_url`` at this server; the local demo does the same, with the citizen
simulator (bridge/simulator/__init__.py) on top.  It follows the project's API notes
("WhatsApp Cloud API") and is deliberately strict: every request the bridge makes is
checked the way Meta checks it, and anything malformed is answered with Meta's error
envelope, so a wrong request fails the test instead of failing in production.  It serves
only what the bridge sends: text messages (optionally replying to one) and mark-reads;
any other message type gets Graph's invalid-parameter answer (400, code 100).

Graph side (the bridge calls us)::

    POST /{version}/{phone_number_id}/messages   send a text message, or mark one read
    GET  /{version}/{media_id}                   media step 1: metadata and a download URL
    GET  /media-bytes/{media_id}?token=...       media step 2: the bytes (bearer required)

Webhook side (we play Meta calling the bridge): :meth:`FakeGraph.text`,
:meth:`FakeGraph.image`, :meth:`FakeGraph.document` (from a number, a business-scoped
user id, or both), the answers :meth:`FakeGraph.list_reply`,
:meth:`FakeGraph.button_reply` and :meth:`FakeGraph.quick_reply`, the system messages
:meth:`FakeGraph.user_changed_number` and :meth:`FakeGraph.user_changed_user_id`,
:meth:`FakeGraph.status` and :meth:`FakeGraph.notification` build notifications in the
documented shape, stamped by the fake's ``clock`` unless told, and
:meth:`FakeGraph.post_webhook` delivers them signed.

What the tests read back:

* ``sent`` – one :class:`SentRecord` per accepted ``POST .../messages``, in arrival
  order, mark-reads included: ``{"body": <the JSON body as the bridge sent it>,
  "id": <the wamid we answered with, or None for a mark-read>}``.
* ``rejected`` – one :class:`RejectedRecord` per request answered with an error
  (malformed body, bad token, injected failure, ...), to explain a failing test.
* ``media_requests`` / ``media_downloads`` – media ids asked for in step 1 / step 2.

The modules, by job:

* :mod:`.checks` – what Meta checks on a request (token, version, send body) and the
  error envelope it answers with;
* :mod:`.server` – :class:`FakeGraph`: the aiohttp server, its routes, the records,
  media storage and injected failures (``fail_next``), ``wait_for_sent``;
* :mod:`.webhooks` – Meta's side of the webhook: building, signing, posting.

Typical use::

    async with FakeGraph() as graph:
        await graph.post_webhook(bridge_url, graph.text("6281234567890", "KTP saya?"))
        reply = await graph.wait_for_sent(lambda r: r["body"].get("to") == "6281234567890")
"""

from bridge.simulator.graph.checks import GraphError, validate_send_body
from bridge.simulator.graph.server import FakeGraph, RejectedRecord, SentRecord
from bridge.simulator.graph.webhooks import STATUS_VALUES, Webhooks, new_wamid, system_clock

__all__ = [
    "STATUS_VALUES",
    "FakeGraph",
    "GraphError",
    "RejectedRecord",
    "SentRecord",
    "Webhooks",
    "new_wamid",
    "system_clock",
    "validate_send_body",
]
