// AcceptPoller: the JS-visible owner of one listening socket (a ChannelServer's or a Distributor's):
// readable -> accept4 until EAGAIN (budgeted), the accepted fds handed to JS at once.
#ifndef FDPASS_ACCEPT_POLLER_H_
#define FDPASS_ACCEPT_POLLER_H_

#include <napi.h>

#include "poll_base.h"

namespace fdpass {

class AcceptPoller : public Napi::ObjectWrap<AcceptPoller>, public PollBase {
 public:
  static Napi::Function Define(Napi::Env env);
  // new AcceptPoller(fd, onAccept, onError): takes ownership of fd once it returns; when it throws, fd
  // is still the caller's. onAccept(fds, errno, syscall): the accepted descriptors, JS's from then on,
  // and the error that ended the batch (0: none).
  explicit AcceptPoller(const Napi::CallbackInfo& info);
  ~AcceptPoller() override;

 private:
  void OnReadable() override;

  Napi::FunctionReference on_accept_;
};

}  // namespace fdpass

#endif  // FDPASS_ACCEPT_POLLER_H_
