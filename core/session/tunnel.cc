#include "core/session/tunnel.h"

#include <algorithm>

namespace crescent::core {

Tunnel::Tunnel(EventLoop& loop, Stream& client, Stream& server, const TunnelTimeouts& t,
               Owner& owner)
    : loop_(loop),
      client_(client),
      server_(server),
      t_(t),
      owner_(owner),
      timer_(Timer::create(loop, &Tunnel::onTimer, this)) {}

// The owner closes the streams (which disarms their handler) before destroying us, and may
// destroy us after the streams are already freed: never touch them here.
Tunnel::~Tunnel() = default;

void Tunnel::start(Buffer to_server, Buffer to_client) {
  client_.setHandler(this);
  server_.setHandler(this);
  if (!to_server.empty()) server_.write(std::move(to_server));
  if (!to_client.empty()) client_.write(std::move(to_client));
  if (!server_.aboveHighWater()) client_.readStart();
  if (!client_.aboveHighWater()) server_.readStart();
  armTimer();
}

void Tunnel::onStreamData(Stream& s, Buffer data) {
  Stream& out = peer(s);
  out.write(std::move(data));
  if (out.aboveHighWater()) s.readStop();  // resumed by onStreamDrained(out)
}

void Tunnel::onStreamDrained(Stream& s) {
  Stream& in = peer(s);
  bool in_eof = &in == &client_ ? client_eof_ : server_eof_;
  if (!in_eof) in.readStart();
}

void Tunnel::onStreamEof(Stream& s) {
  bool& eof = &s == &client_ ? client_eof_ : server_eof_;
  eof = true;
  peer(s).shutdown();  // after the bytes already queued to it
  endIfFinished();
}

void Tunnel::onStreamShutdownDone(Stream&) {
  endIfFinished();
}

// Both sides sent their FIN and both FINs we forwarded left after every queued byte:
// closing now loses nothing (closing earlier would cancel queued writes).
void Tunnel::endIfFinished() {
  if (client_eof_ && server_eof_ && client_.shutdownDone() && server_.shutdownDone())
    end(TunnelEnd::kClosed);
}

void Tunnel::onStreamError(Stream& s, int) {
  end(&s == &client_ ? TunnelEnd::kClientAbort : TunnelEnd::kServerAbort);
}

void Tunnel::end(TunnelEnd why) {
  if (ended_) return;
  ended_ = true;
  timer_->stop();
  client_.readStop();
  server_.readStop();
  owner_.onTunnelEnd(why);  // may destroy us (deferred): nothing after this
}

void Tunnel::armTimer() {
  NextDeadline next(loop_.now());
  if (t_.tunnel > 0) {
    next.consider(std::max(client_.lastActivity(), server_.lastActivity()), t_.tunnel);
  } else {
    next.consider(client_.lastActivity(), client_eof_ && t_.client_fin ? t_.client_fin : t_.client);
    next.consider(server_.lastActivity(), server_eof_ && t_.server_fin ? t_.server_fin : t_.server);
  }
  if (next.ms() > 0) timer_->start(next.ms());
}

void Tunnel::onTimer(void* ctx) {
  auto* self = static_cast<Tunnel*>(ctx);
  uint64_t now = self->loop_.now();
  const TunnelTimeouts& t = self->t_;
  if (t.tunnel > 0) {
    uint64_t last = std::max(self->client_.lastActivity(), self->server_.lastActivity());
    if (now - last >= t.tunnel) return self->end(TunnelEnd::kClientTimeout);
  } else {
    uint64_t ct = self->client_eof_ && t.client_fin ? t.client_fin : t.client;
    uint64_t st = self->server_eof_ && t.server_fin ? t.server_fin : t.server;
    if (ct > 0 && now - self->client_.lastActivity() >= ct)
      return self->end(TunnelEnd::kClientTimeout);
    if (st > 0 && now - self->server_.lastActivity() >= st)
      return self->end(TunnelEnd::kServerTimeout);
  }
  self->armTimer();
}

}  // namespace crescent::core
