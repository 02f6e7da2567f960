"""E-mail over SMTP with STARTTLS (never in clear), in the person's language."""

from __future__ import annotations

import html
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from notify.channels._adapter import Adapter, ChannelSettings, secret_missing, tls_context
from notify.channels._format import labels, plain, severity_label
from notify.channels.base import Failed, Message, Outcome, Recipient, Retry, Sent


class EmailSettings(ChannelSettings):
    """The SMTP relay (submission with STARTTLS), its account and the sender address."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_NOTIFY_EMAIL_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    host: str = Field(default="", description="the SMTP relay's host name")
    port: int = Field(default=587, ge=1, le=65535, description="the relay's submission port")
    username: str | None = Field(default=None, description="the relay account; unset: no login")
    password: SecretStr | None = Field(
        default=None, description="the relay account's password (secret; needed with a username)"
    )
    sender: str = Field(default="", description="the From address, e.g. gridwatch@example.org")
    ca_file: Path | None = Field(
        default=None, description="a CA file to trust instead of the system's; unset: system CAs"
    )

    def missing_secrets(self) -> list[str]:
        missing = [name for name in ("host", "sender") if not getattr(self, name)]
        if self.username and secret_missing(self.password):
            missing.append("password")
        return missing


def _code_outcome(code: int, text: bytes | str, what: str) -> Outcome:
    """4xx: the server asks to try later; 5xx (and anything else): refused for good."""
    reason = f"{what}: {code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
    return Retry(reason=reason[:300]) if 400 <= code < 500 else Failed(reason=reason[:300])


class EmailChannel(Adapter):
    """Sends one multipart (text and HTML) message per delivery over a new STARTTLS session."""

    name = "email"
    per_minute = None

    def __init__(self, settings: EmailSettings) -> None:
        settings.require_secrets()
        self.settings = settings
        self._context = tls_context(settings.ca_file)
        self._password = settings.password.get_secret_value() if settings.password else ""

    def address(self, recipient: Recipient) -> str | None:
        email = (recipient.email or "").strip()
        return email if "@" in email else None

    def compose(self, message: Message, recipient: Recipient, address: str) -> EmailMessage:
        """The e-mail: subject, plain text and an HTML alternative, in the person's language."""
        words = labels(recipient.language)
        severity = severity_label(message, recipient.language)
        mail = EmailMessage()
        mail["Subject"] = f"[{severity}] {message.title}" if severity else message.title
        mail["From"] = self.settings.sender
        mail["To"] = address
        mail["Date"] = formatdate(localtime=False)
        domain = self.settings.sender.rpartition("@")[2] or "gridwatch"
        # One Message-ID per delivery, so a resent delivery is recognisably the same mail.
        mail["Message-ID"] = f"<{message.key}.{message.kind}@{domain}>"
        mail["Content-Language"] = recipient.language
        mail.set_content(plain(message, recipient.language))
        body = "".join(f"<p>{html.escape(line)}</p>" for line in message.body.splitlines())
        link = (
            f'<p><a href="{html.escape(message.link, quote=True)}">{words["open"]}</a></p>'
            if message.link
            else ""
        )
        mail.add_alternative(
            f'<html lang="{html.escape(recipient.language)}"><body>'
            f"<h3>{html.escape(str(mail['Subject']))}</h3>{body}{link}</body></html>",
            subtype="html",
        )
        return mail

    def _send(self, message: Message, recipient: Recipient, address: str) -> Outcome:
        mail = self.compose(message, recipient, address)
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_s) as smtp:
                smtp.ehlo()
                smtp.starttls(context=self._context)  # refuses a server without STARTTLS
                smtp.ehlo()
                if s.username:
                    smtp.login(s.username, self._password)
                refused = smtp.send_message(mail, from_addr=s.sender, to_addrs=[address])
        except smtplib.SMTPNotSupportedError:
            return Failed(reason="the relay does not offer STARTTLS; mail is never sent in clear")
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            return _code_outcome(code, text, "recipient refused")
        except smtplib.SMTPSenderRefused as error:
            return _code_outcome(error.smtp_code, error.smtp_error, "sender refused")
        except smtplib.SMTPResponseException as error:
            return _code_outcome(error.smtp_code, error.smtp_error, "relay refused")
        except ssl.SSLCertVerificationError as error:
            return Failed(reason=f"the relay's certificate is not trusted ({error.verify_message})")
        except smtplib.SMTPServerDisconnected:
            return Retry(reason="the relay closed the connection")
        except (TimeoutError, OSError, smtplib.SMTPException) as error:
            return Retry(reason=f"the relay is unreachable ({type(error).__name__})")
        if refused:
            code, text = next(iter(refused.values()))
            return _code_outcome(code, text, "recipient refused")
        return Sent(provider_ref=str(mail["Message-ID"]))
