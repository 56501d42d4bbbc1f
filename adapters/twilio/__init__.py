"""The Twilio adapter: the signed SMS webhook, status callbacks and the REST sender.

Utilities that rent a Twilio number instead of an operator bind meet the gateway
here. The webhook turns Twilio's form post into an `InboundSms`, runs it through the
same pipeline as SMPP and answers with TwiML; status callbacks land on the reply row.
"""

from adapters.twilio.rest import TwilioRestSender
from adapters.twilio.signature import TwilioSignature
from adapters.twilio.webhook import TwilioWebhook

__all__ = ["TwilioRestSender", "TwilioSignature", "TwilioWebhook"]
