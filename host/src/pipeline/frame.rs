//! A libzmq message frame (`zmq_msg_t`) that can be sent on without copying its bytes: a
//! frame an input received and a plugin passed goes to a ZeroMQ output as a second
//! reference to the same bytes ([`Frame::share`], `zmq_msg_copy`), as `zmq_proxy` forwards
//! them. The zmq crate's `Message` does not expose its `zmq_msg_t`, so the input's frames
//! are these.

use std::cell::UnsafeCell;
use std::ops::Deref;

/// One frame. The `zmq_msg_t` is in an `UnsafeCell` because sharing it (`zmq_msg_copy`)
/// marks the source shared: a change to its flags and reference count, never to the
/// bytes [`Deref`] lends.
pub struct Frame(UnsafeCell<zmq_sys::zmq_msg_t>);

// SAFETY: a `zmq_msg_t` is plain data owned by this value (its content's reference count
// is atomic); libzmq lets a message be used from any thread, one at a time. `Frame` is not
// `Sync`, so it is never used from two threads at once.
unsafe impl Send for Frame {}

impl Frame {
    /// An empty frame.
    pub fn new() -> Self {
        // SAFETY: a zeroed `zmq_msg_t` is valid storage for `zmq_msg_init`, which cannot
        // fail.
        unsafe {
            let frame = Frame(UnsafeCell::new(std::mem::zeroed()));
            zmq_sys::zmq_msg_init(frame.0.get());
            frame
        }
    }

    /// A frame holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        // SAFETY: zeroed storage is initialised by `zmq_msg_init_size` (an allocation
        // failure aborts in libzmq); `bytes.len()` bytes are then writable at its data.
        unsafe {
            let frame = Frame(UnsafeCell::new(std::mem::zeroed()));
            let rc = zmq_sys::zmq_msg_init_size(frame.0.get(), bytes.len());
            assert_eq!(rc, 0, "zmq_msg_init_size");
            if !bytes.is_empty() {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    zmq_sys::zmq_msg_data(frame.0.get()).cast::<u8>(),
                    bytes.len(),
                );
            }
            frame
        }
    }

    /// Receives the next frame from `socket` into this one (its old content released).
    pub fn recv(&mut self, socket: &mut zmq::Socket, flags: i32) -> zmq::Result<()> {
        // SAFETY: the message is initialised and exclusively borrowed; the socket pointer
        // is valid while `socket` is borrowed.
        let rc = unsafe { zmq_sys::zmq_msg_recv(self.0.get(), socket.as_mut_ptr(), flags) };
        if rc == -1 { Err(last_error()) } else { Ok(()) }
    }

    /// Whether more frames of the same message follow.
    pub fn more(&self) -> bool {
        // SAFETY: the message is initialised.
        unsafe { zmq_sys::zmq_msg_more(self.0.get()) != 0 }
    }

    /// A second frame with the same bytes, without copying them (a reference count for a
    /// large frame; a copy of the few bytes of a small one).
    pub fn share(&self) -> Frame {
        let copy = Frame::new();
        // SAFETY: both messages are initialised; `zmq_msg_copy` changes the source's flags
        // and its content's atomic reference count, which no outstanding borrow reads
        // (`Deref` lends the bytes only, and a small frame's inline bytes are only read).
        let rc = unsafe { zmq_sys::zmq_msg_copy(copy.0.get(), self.0.get()) };
        assert_eq!(rc, 0, "zmq_msg_copy");
        copy
    }

    /// Sends the frame on `socket`; on failure gives it back with the error, to send again.
    pub fn send(self, socket: &mut zmq::Socket, flags: i32) -> Result<(), (zmq::Error, Frame)> {
        // SAFETY: the message is initialised and owned; on success libzmq takes its content
        // and leaves it empty (closed below by `Drop`, as libzmq allows).
        let rc = unsafe { zmq_sys::zmq_msg_send(self.0.get(), socket.as_mut_ptr(), flags) };
        if rc == -1 {
            Err((last_error(), self))
        } else {
            Ok(())
        }
    }
}

impl Default for Frame {
    fn default() -> Self {
        Frame::new()
    }
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the message is initialised; its data pointer and size describe its
        // bytes, which stay put until it is closed or received into (both need `&mut`).
        unsafe {
            let size = zmq_sys::zmq_msg_size(self.0.get());
            if size == 0 {
                return &[];
            }
            let data = zmq_sys::zmq_msg_data(self.0.get())
                .cast::<u8>()
                .cast_const();
            std::slice::from_raw_parts(data, size)
        }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // SAFETY: the message is initialised and closed once.
        unsafe {
            zmq_sys::zmq_msg_close(self.0.get());
        }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({} bytes)", self.len())
    }
}

impl From<&[u8]> for Frame {
    fn from(bytes: &[u8]) -> Self {
        Frame::from_slice(bytes)
    }
}

/// libzmq's error for the last call on this thread.
fn last_error() -> zmq::Error {
    // SAFETY: zmq_errno reads a thread-local error number.
    zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_frame_has_the_same_bytes_without_a_copy() {
        for len in [0, 5, 33, 34, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = Frame::from_slice(&bytes);
            let shared = frame.share();
            assert_eq!(&*shared, &bytes[..]);
            assert_eq!(&*frame, &bytes[..]);
            if len > 33 {
                assert_eq!(
                    shared.as_ptr(),
                    frame.as_ptr(),
                    "large frames share their bytes"
                );
            }
            drop(frame);
            assert_eq!(&*shared, &bytes[..], "the share outlives the original");
        }
    }
}
