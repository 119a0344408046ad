"""The JSON of WhatsApp's ``/messages``: the body we send, and what a button press carries.

Text goes as ``text``, or as an ``interactive`` message with one reply button; an
approved template as ``template``, with its body parameters and, when it has an
acknowledging quick-reply button, that button's payload. A press comes back as an
inbound message: ``interactive.button_reply.id`` for a reply button, ``button.payload``
(type ``button``) for a template's quick reply.
"""

from __future__ import annotations

from typing import Any

from providers.base import Message

#: Meta's limit on the body of an interactive message (a plain text may be 4096).
MAX_INTERACTIVE_BODY = 1024


def pressed(message: dict[str, Any]) -> object:
    """What a button press carried: the reply button's ``id`` or the quick reply's payload."""
    interactive, quick = message.get("interactive"), message.get("button")
    if isinstance(interactive, dict) and isinstance(interactive.get("button_reply"), dict):
        return interactive["button_reply"].get("id")
    if message.get("type") == "button" and isinstance(quick, dict):
        return quick.get("payload")
    return None


def payload(
    message: Message, *, as_template: bool, button: tuple[str, str] | None = None
) -> dict[str, Any]:
    """The ``/messages`` JSON body: ``message.text``, or its approved template.

    ``button``: for text, (id, title): send it as an interactive message with that
    reply button, if the body is short enough for one; for a template, (payload,
    index): the payload of the template's quick-reply button at that index.
    """
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.recipient.removeprefix("+"),
    }
    template = message.template
    if as_template and template is not None:
        spec: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
        components: list[dict[str, Any]] = []
        if template.params:
            parameters = [{"type": "text", "text": value} for value in template.params]
            components.append({"type": "body", "parameters": parameters})
        if button:
            quick = [{"type": "payload", "payload": button[0]}]
            components.append(
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": button[1],
                    "parameters": quick,
                }
            )
        if components:
            spec["components"] = components
        body["type"] = "template"
        body["template"] = spec
    elif button and len(message.text) <= MAX_INTERACTIVE_BODY:
        reply = {"type": "reply", "reply": {"id": button[0], "title": button[1]}}
        body["type"] = "interactive"
        body["interactive"] = {
            "type": "button",
            "body": {"text": message.text},
            "action": {"buttons": [reply]},
        }
    else:
        body["type"] = "text"
        body["text"] = {"preview_url": False, "body": message.text}
    body["biz_opaque_callback_data"] = message.reference
    return body
