#include "halfserve/serve/server.h"

#include <thread>

#include "halfserve/serve/grpc_server.h"
#include "halfserve/serve/rest_server.h"

namespace halfserve {

Server::Server(ServerOptions options) : options_(std::move(options)) {
  options_.manager.metrics = &metrics_;
  models_ = std::make_unique<ModelManager>(options_.models, options_.manager);
}

Server::~Server() { shutdown(std::chrono::milliseconds(0)); }

void Server::start() {
  models_->start();
  if (options_.rest_port != 0) {
    RestOptions rest;
    rest.host = options_.rest_host;
    rest.port = options_.rest_port;
    rest.max_body_bytes = options_.max_request_bytes;
    rest.max_streams = options_.max_streams;
    rest.access_log = options_.access_log;
    rest_ = std::make_unique<RestServer>(*models_, metrics_, rest);
    rest_->start();
  }
  if (options_.grpc_port != 0) {
    grpc_ = std::make_unique<GrpcServer>(*models_, metrics_, options_.grpc_host + ":" + std::to_string(options_.grpc_port),
                                         options_.max_request_bytes);
    grpc_->start();
  }
}

void Server::shutdown(std::chrono::milliseconds grace) {
  if (rest_) {
    // Readiness goes false first, and load balancers get a moment to notice before the port closes.
    rest_->set_draining(true);
    std::this_thread::sleep_for(std::min(grace, options_.readiness_grace));
    rest_->stop();
    rest_.reset();
  }
  if (grpc_) {
    grpc_->shutdown(grace);
    grpc_.reset();
  }
  if (models_) models_->stop();
}

int Server::rest_port() const { return rest_ ? rest_->port() : 0; }
int Server::grpc_port() const { return grpc_ ? grpc_->port() : 0; }

}  // namespace halfserve
