"""Built-in face detectors: MTCNN (default), YuNet, CenterFace and dlib (HOG or CNN)."""
