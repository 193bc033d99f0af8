"""Creating the official Pub/Sub clients: Application Default Credentials in production, an emulator or
local test server (``PUBSUB_EMULATOR_HOST`` or ``emulator_host=``) in tests, or clients you pass in."""

from __future__ import annotations

import os
from typing import Any

import grpc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
PROJECT_ENVS = ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "GCP_PROJECT")


def default_project() -> str | None:
    """The project from the environment, else from Application Default Credentials (None when unknown).
    Against an emulator any project id works; the emulator's own convention is used then."""
    for name in PROJECT_ENVS:
        value = os.environ.get(name)
        if value:
            return value
    if os.environ.get(EMULATOR_ENV):
        return os.environ.get("PUBSUB_PROJECT_ID") or "lssm-jobs-local"
    try:
        import google.auth

        _, project = google.auth.default()
    except Exception:  # no ADC: the caller reports that a project is needed
        return None
    return project


def make_clients(
    emulator_host: str | None,
    *,
    batch_settings: pubsub_v1.types.BatchSettings,
    ordering: bool,
) -> tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]:
    """A publisher and a subscriber client. With ``emulator_host`` they use a plaintext channel to it (no
    credentials); otherwise the clients find ``PUBSUB_EMULATOR_HOST`` or Application Default Credentials
    themselves."""
    publisher_options = pubsub_v1.types.PublisherOptions(enable_message_ordering=ordering)
    publisher_kwargs: dict[str, Any] = {}
    subscriber_kwargs: dict[str, Any] = {}
    if emulator_host:
        publisher_kwargs["transport"] = PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_host))
        subscriber_kwargs["transport"] = SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator_host))
    publisher = pubsub_v1.PublisherClient(
        batch_settings=batch_settings, publisher_options=publisher_options, **publisher_kwargs
    )
    subscriber = pubsub_v1.SubscriberClient(**subscriber_kwargs)
    return publisher, subscriber
